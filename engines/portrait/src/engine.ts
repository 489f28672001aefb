import { createRequire } from 'node:module';
import sharp from 'sharp';
import type { EngineCapabilities, JobRequest } from '@photoenhance/contracts';
import { enhance as classicEnhance, prepare, sharpenDetail, upscaleLanczos, wantedSteps, type Pixels } from '@photoenhance/engine-classic';
import { stages, type EngineContext, type EngineResult } from '@photoenhance/engine-protocol';
import { decodeInput, encodeOutput, EsrganEngine, upscaleRgb, type Factor, type RgbImage } from '@photoenhance/engine-esrgan';
import { FACE_MARGIN, faceRegion, featherMask, type Region } from './blend.js';
import { FaceDetector, type FaceBox } from './detect.js';
import type { PortraitSettings } from './settings.js';

const pkg = createRequire(import.meta.url)('../package.json') as { version: string };
export const PORTRAIT_VERSION = pkg.version;

export const PORTRAIT_CAPABILITIES: EngineCapabilities = {
  options: ['scale', 'format', 'quality', 'weight', 'onlyCenterFace', 'denoise', 'tone', 'sharpen'],
  scales: [1, 2, 4],
  formats: ['png', 'jpeg', 'webp'],
};

/**
 * The portrait engine — the GFPGAN idea with parts that ship in npm:
 * decode → detect faces (face-api SSD MobileNet v1) → the classic steps on the whole photo (denoise when noisy, tone
 * when washed out: `prepare` from the classic engine) → background = those pixels sharpened and Lanczos-upscaled,
 * exactly as `classic` does it → each face region (grown by FACE_MARGIN) of the same prepared pixels through ESRGAN →
 * feathered blend over the background at `weight`. Faces and background start from the same pixels and both sit on
 * the pixel-centre grid, so no colour matching is needed and nothing is offset (no ghosting at the blend edge).
 * A photo without faces is exactly the classic result. Progress stages: decode, detect, background, faces, compose.
 */
export class PortraitEngine {
  private constructor(
    private readonly esrgan: EsrganEngine,
    private readonly detector: FaceDetector,
    readonly settings: PortraitSettings,
  ) {}

  static async start(settings: PortraitSettings): Promise<PortraitEngine> {
    const esrgan = await EsrganEngine.start(settings.esrgan);
    const detector = await FaceDetector.load(esrgan.runtime.tf, settings.minScore);
    return new PortraitEngine(esrgan, detector, settings);
  }

  info(): Record<string, unknown> {
    return {
      ...this.esrgan.info(),
      detector: '@vladmandic/face-api ssdMobilenetv1',
      background: 'classic',
      minScore: this.settings.minScore,
    };
  }

  handle = async (job: JobRequest, ctx: EngineContext): Promise<EngineResult> => {
    const { scale, format, quality, weight, onlyCenterFace } = job.options;
    const want = wantedSteps(job.options);
    const { step, lap, timings } = stages(ctx);

    step(0.02, 'decode');
    const { rgb, alpha } = await decodeInput(job.input);
    lap('decode');

    step(0.06, 'detect');
    let faces = await this.detector.detect(rgb, this.settings.maxFaces);
    if (onlyCenterFace && faces.length > 1) faces = [nearestCentre(faces, rgb.width, rgb.height)];
    const regions = faces.map((f) => faceRegion(f, rgb.width, rgb.height)).filter((r): r is Region => r !== undefined);
    lap('detect');

    const sub = (from: number, span: number, stage: string): EngineContext => ({
      signal: ctx.signal,
      log: (l, m) => ctx.log(l, m),
      progress: (p) => ctx.progress(from + span * p, stage),
    });

    if (regions.length === 0) {
      // Nothing to restore: the classic result is the answer, written straight to job.output.
      step(0.1, 'background');
      const r = await classicEnhance(job, sub(0.1, 0.88, 'background'));
      lap('background');
      return {
        ...r,
        applied: { ...r.applied, onlyCenterFace },
        timings: { ...timings },
        meta: { ...r.meta, faces: 0, note: 'no face found: background (classic) only' },
      };
    }

    step(0.1, 'background');
    const prep = prepare({ data: rgb.data, width: rgb.width, height: rgb.height, channels: 3 }, want);
    // Faces start from the prepared pixels before sharpening (ESRGAN makes its own detail).
    const base: RgbImage = { data: prep.img.data, width: rgb.width, height: rgb.height };
    const bg: Pixels = { ...prep.img, data: prep.img.data.slice() };
    if (want.sharpen) sharpenDetail(bg, undefined, undefined, prep.luma);
    const up = upscaleLanczos(bg, scale);
    lap('background');

    for (let i = 0; i < regions.length; i++) {
      step(0.4 + (0.5 * i) / regions.length, 'faces');
      await this.restoreFace(base, up, regions[i]!, scale, weight, ctx.signal);
    }
    lap('faces');

    step(0.92, 'compose');
    const upAlpha = alpha ? upscaleLanczos({ data: alpha, width: rgb.width, height: rgb.height, channels: 1 }, scale).data : undefined;
    const out = await encodeOutput({ data: up.data, width: up.width, height: up.height }, upAlpha, job.output, format, quality);
    lap('compose');
    const steps = { denoise: prep.denoised, tone: prep.levels !== undefined, sharpen: want.sharpen };
    return {
      output: { width: out.width, height: out.height, format, bytes: out.bytes },
      applied: { ...(format === 'png' ? { scale, format } : { scale, format, quality }), onlyCenterFace, weight, ...steps },
      timings,
      meta: {
        faces: regions.length,
        regions: regions.map((r) => [r.left, r.top, r.width, r.height]),
        scores: faces.slice(0, regions.length).map((f) => Math.round(f.score * 100) / 100),
        model: `esrgan-${this.esrgan.settings.model}`,
        noise: Math.round(prep.noise * 100) / 100,
      },
    };
  };

  /** ESRGAN on one face region of the prepared input, blended into the upscaled background (in place) through a feathered mask. */
  private async restoreFace(base: RgbImage, up: Pixels, r: Region, scale: 1 | 2 | 4, weight: number, signal: AbortSignal): Promise<void> {
    let src = crop(base, r);
    const k = Math.min(1, this.settings.maxFacePx / Math.max(r.width, r.height));
    if (k < 1) src = await resizeRgb(src, Math.max(1, Math.round(r.width * k)), Math.max(1, Math.round(r.height * k)));
    const factor: Factor = scale === 4 ? 4 : 2;
    let face = await upscaleRgb(this.esrgan.runtime.tf, this.esrgan.models, src, factor, this.esrgan.settings, { signal });
    const W = r.width * scale;
    const H = r.height * scale;
    if (face.width !== W || face.height !== H) face = await resizeRgb(face, W, H);
    const feather = Math.round((Math.min(W, H) * FACE_MARGIN) / (1 + 2 * FACE_MARGIN));
    const mask = featherMask(W, H, feather, {
      left: r.left === 0,
      top: r.top === 0,
      right: r.left + r.width === base.width,
      bottom: r.top + r.height === base.height,
    });
    blendInto(up, face, mask, weight, r.left * scale, r.top * scale);
  }

  close(): Promise<void> {
    return this.esrgan.close();
  }
}

/** out = out·(1 − m·w) + face·m·w over the face's rectangle at (left, top) of the RGB image `up`. */
function blendInto(up: Pixels, face: RgbImage, mask: Float32Array, weight: number, left: number, top: number): void {
  const oc = new Uint8ClampedArray(up.data.buffer, up.data.byteOffset, up.data.length);
  for (let y = 0; y < face.height; y++) {
    for (let x = 0; x < face.width; x++) {
      const a = mask[y * face.width + x]! * weight;
      if (a <= 0) continue;
      const o = ((top + y) * up.width + left + x) * 3;
      const f = (y * face.width + x) * 3;
      for (let c = 0; c < 3; c++) oc[o + c] = up.data[o + c]! + a * (face.data[f + c]! - up.data[o + c]!);
    }
  }
}

function nearestCentre(faces: FaceBox[], width: number, height: number): FaceBox {
  const d = (f: FaceBox): number => (f.x + f.width / 2 - width / 2) ** 2 + (f.y + f.height / 2 - height / 2) ** 2;
  return faces.reduce((best, f) => (d(f) < d(best) ? f : best));
}

function crop(img: RgbImage, r: Region): RgbImage {
  const data = new Uint8Array(r.width * r.height * 3);
  for (let y = 0; y < r.height; y++) {
    const s = ((r.top + y) * img.width + r.left) * 3;
    data.set(img.data.subarray(s, s + r.width * 3), y * r.width * 3);
  }
  return { data, width: r.width, height: r.height };
}

async function resizeRgb(img: RgbImage, width: number, height: number): Promise<RgbImage> {
  const data = await sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } })
    .resize(width, height, { kernel: 'lanczos3' })
    .raw()
    .toBuffer();
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width, height };
}
