/**
 * ESRGAN models shipped in npm (UpscalerJS: @upscalerjs/esrgan-slim and -medium, MIT) and the upscaler that runs them.
 * One Upscaler per (model, factor), loaded on first use and kept resident: the weights are small (0.9–3 MB each);
 * the default factor is loaded at start-up so the first job does not pay for it.
 */
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import type * as TF from '@tensorflow/tfjs';
import type { Tf } from './runtime.js';

const require = createRequire(import.meta.url);

export const MODEL_SIZES = ['slim', 'medium'] as const;
export type ModelSize = (typeof MODEL_SIZES)[number];
/** Factors the models are run at (the job's scale 1 runs ×2, then resamples: see enhance.ts). */
export type Factor = 2 | 4;

/** What the engine needs of an UpscalerJS instance. */
export interface UpscalerLike {
  ready: Promise<void>;
  execute(image: TF.Tensor3D | TF.Tensor4D, options: { output: 'tensor' }): Promise<TF.Tensor3D>;
  dispose(): Promise<void>;
}

type UpscalerClass = new (opts: { model: unknown }) => UpscalerLike;

let upscalerClass: UpscalerClass | undefined;

/**
 * Build the Upscaler class from upscaler@1.0.0's platform-neutral CommonJS pieces. `upscaler/node` itself would load
 * @tensorflow/tfjs-node; these files only use the `tf` passed in. Its package.json exports only `./node`, so the
 * folder is found from that entry (resolving it does not load it).
 */
function getUpscalerClass(tf: Tf): UpscalerClass {
  if (upscalerClass) return upscalerClass;
  const src = resolve(dirname(require.resolve('upscaler/node')), '../..'); // dist/node/upscalerjs/src
  const shared = require(`${src}/shared/index.js`) as { getUpscaler(args: Record<string, unknown>): UpscalerClass };
  const args = require(`${src}/node/args.node.js`) as { getUpscaleOptions: unknown };
  const loader = require(`${src}/node/loadModel.node.js`) as { loadModel: unknown };
  const image = require(`${src}/node/image.node.js`) as {
    getImageAsTensor: unknown;
    tensorAsBase64: unknown;
    checkValidEnvironment: unknown;
  };
  upscalerClass = shared.getUpscaler({
    tf,
    getUpscaleOptions: args.getUpscaleOptions,
    // Resolves the model package folder and loads `file://<folder>/models/xN/model.json` through our load router.
    loadModel: loader.loadModel,
    getImageAsTensor: image.getImageAsTensor,
    tensorAsBase64: image.tensorAsBase64,
    checkValidEnvironment: image.checkValidEnvironment,
  });
  return upscalerClass;
}

/** The model definition object for a size and factor, from the model package (CommonJS export). */
export function modelDefinition(size: ModelSize, factor: Factor): unknown {
  const mod = require(`@upscalerjs/esrgan-${size}/${factor}x`) as { default?: unknown };
  return mod.default ?? mod;
}

/** Files of the model package, e.g. its reference samples under assets/. */
export function modelPackageDir(size: ModelSize): string {
  // The package exports no package.json; its CommonJS entry lives at dist/cjs/models/esrgan-<size>/src/cjs.js.
  return resolve(dirname(require.resolve(`@upscalerjs/esrgan-${size}`)), '../../../../..');
}

export class ModelCache {
  private readonly loaded = new Map<string, Promise<UpscalerLike>>();

  constructor(
    private readonly tf: Tf,
    readonly size: ModelSize,
  ) {}

  get(factor: Factor): Promise<UpscalerLike> {
    const key = `${this.size}x${factor}`;
    let p = this.loaded.get(key);
    if (!p) {
      const Upscaler = getUpscalerClass(this.tf);
      const up = new Upscaler({ model: modelDefinition(this.size, factor) });
      p = up.ready.then(() => up);
      // A failed load is not cached: the next job tries again.
      p.catch(() => this.loaded.delete(key));
      this.loaded.set(key, p);
    }
    return p;
  }

  /** Factors loaded so far, e.g. ["slim x2"]. */
  names(): string[] {
    return [...this.loaded.keys()].map((k) => k.replace('x', ' x'));
  }

  async dispose(): Promise<void> {
    for (const p of this.loaded.values()) await (await p.catch(() => undefined))?.dispose();
    this.loaded.clear();
  }
}
