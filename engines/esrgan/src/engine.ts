import { createRequire } from 'node:module';
import type { EngineCapabilities, JobRequest } from '@photoenhance/contracts';
import { stages, type EngineContext, type EngineResult } from '@photoenhance/engine-protocol';
import { decodeInput, encodeOutput, resizeAlpha } from './image-io.js';
import { ModelCache, type Factor } from './models.js';
import { startRuntime, type Runtime } from './runtime.js';
import type { EsrganSettings } from './settings.js';
import { upscaleRgb } from './upscale.js';

const pkg = createRequire(import.meta.url)('../package.json') as { version: string };
export const ESRGAN_VERSION = pkg.version;

/** Options honoured. GFPGAN-only ones (version, weight, bgUpsampler, bgTile, …) are ignored: the tile is ESRGAN_TILE. */
export const ESRGAN_CAPABILITIES: EngineCapabilities = {
  options: ['scale', 'format', 'quality'],
  scales: [1, 2, 4],
  formats: ['png', 'jpeg', 'webp'],
};

/** Progress is sent at most this often during the tile loop (the protocol asks for a few a second). */
const PROGRESS_EVERY_MS = 250;

/**
 * The ESRGAN engine: tfjs on WASM (started or the process fails), the configured model resident, one job at a time.
 * scale 2 and 4 run the ×2 and ×4 models; scale 1 runs ×2 and resamples back to the input size with Lanczos-3
 * (a sharpened, de-aliased photo of the same size, at the cost of a ×2 run).
 */
export class EsrganEngine {
  private constructor(
    readonly runtime: Runtime,
    readonly models: ModelCache,
    readonly settings: EsrganSettings,
  ) {}

  static async start(settings: EsrganSettings): Promise<EsrganEngine> {
    const runtime = await startRuntime(settings.wasmPath ? { wasmPath: settings.wasmPath } : {});
    const models = new ModelCache(runtime.tf, settings.model);
    await models.get(2);
    return new EsrganEngine(runtime, models, settings);
  }

  info(): Record<string, unknown> {
    return {
      device: 'cpu',
      backend: this.runtime.backend,
      simd: this.runtime.simd,
      threads: 1,
      tfjs: this.runtime.tfjsVersion,
      model: `@upscalerjs/esrgan-${this.settings.model}`,
      loaded: this.models.names(),
      tile: this.settings.tile,
      tilePad: this.settings.pad,
    };
  }

  handle = async (job: JobRequest, ctx: EngineContext): Promise<EngineResult> => {
    const { scale, format, quality } = job.options;
    const { step, lap, timings } = stages(ctx);
    step(0.02, 'decode');
    const { rgb, alpha } = await decodeInput(job.input);
    lap('decode');

    const factor: Factor = scale === 4 ? 4 : 2;
    step(0.05, 'upscale');
    let last = performance.now();
    let tiles = 0;
    const up = await upscaleRgb(this.runtime.tf, this.models, rgb, factor, this.settings, {
      signal: ctx.signal,
      onTile: (done, total) => {
        tiles = total;
        const now = performance.now();
        if (now - last >= PROGRESS_EVERY_MS && done < total) {
          last = now;
          ctx.progress(0.05 + 0.85 * (done / total), 'upscale');
        }
      },
    });
    lap('upscale');

    step(0.92, 'encode');
    const upAlpha = alpha ? await resizeAlpha(alpha, rgb.width, rgb.height, up.width, up.height) : undefined;
    const size = { width: rgb.width * scale, height: rgb.height * scale };
    const out = await encodeOutput(up, upAlpha, job.output, format, quality, size);
    lap('encode');

    return {
      output: { width: out.width, height: out.height, format, bytes: out.bytes },
      applied: format === 'png' ? { scale, format } : { scale, format, quality },
      timings,
      meta: {
        model: `esrgan-${this.settings.model} x${factor}`,
        tiles,
        input: { width: rgb.width, height: rgb.height, alpha: Boolean(alpha) },
      },
    };
  };

  close(): Promise<void> {
    return this.models.dispose();
  }
}
