import { rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import sharp, { type OverlayOptions } from 'sharp';
import type { EngineCapabilities, JobRequest } from '@photoenhance/contracts';
import { enhance as classicEnhance } from '@photoenhance/engine-classic';
import { stages, type EngineContext, type EngineResult } from '@photoenhance/engine-protocol';
import { decodeInput, EsrganEngine, resizeAlpha, upscaleRgb, type Factor, type RgbImage } from '@photoenhance/engine-esrgan';
import { FACE_MARGIN, faceRegion, featherMask, matchColour, overlay, type Region } from './blend.js';
import { FaceDetector, type FaceBox } from './detect.js';
import type { PortraitSettings } from './settings.js';

const pkg = createRequire(import.meta.url)('../package.json') as { version: string };
export const PORTRAIT_VERSION = pkg.version;

export const PORTRAIT_CAPABILITIES: EngineCapabilities = {
  options: ['scale', 'format', 'quality', 'weight', 'onlyCenterFace'],
  scales: [1, 2, 4],
  formats: ['png', 'jpeg', 'webp'],
};

/**
 * The portrait engine — the GFPGAN idea with parts that ship in npm:
 * decode → detect faces (face-api SSD MobileNet v1) → the classic enhancer on the whole photo (the background) →
 * ESRGAN on each face region (grown by FACE_MARGIN) → colour-match to the background → feathered blend at `weight`.
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
    return { ...this.esrgan.info(), detector: '@vladmandic/face-api ssdMobilenetv1', background: 'classic', minScore: this.settings.minScore };
  }

  handle = async (job: JobRequest, ctx: EngineContext): Promise<EngineResult> => {
    const { scale, format, quality, weight, onlyCenterFace } = job.options;
    const { step, lap, timings } = stages(ctx);

    step(0.02, 'decode');
    const { rgb, alpha } = await decodeInput(job.input);
    lap('decode');

    step(0.06, 'detect');
    let faces = await this.detector.detect(rgb, this.settings.maxFaces);
    if (onlyCenterFace && faces.length > 1) faces = [nearestCentre(faces, rgb.width, rgb.height)];
    const regions = faces.map((f) => faceRegion(f, rgb.width, rgb.height)).filter((r): r is Region => r !== undefined);
    lap('detect');

    const applied: Record<string, unknown> = format === 'png' ? { scale, format } : { scale, format, quality };
    applied.onlyCenterFace = onlyCenterFace;
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
      return { ...r, applied, timings: { ...timings }, meta: { faces: 0, note: 'no face found: background (classic) only' } };
    }

    const background = `${job.output}.background.png`;
    try {
      step(0.1, 'background');
      await classicEnhance({ ...job, output: background, options: { ...job.options, format: 'png' } }, sub(0.1, 0.3, 'background'));
      lap('background');

      const overlays: OverlayOptions[] = [];
      for (let i = 0; i < regions.length; i++) {
        step(0.4 + (0.5 * i) / regions.length, 'faces');
        overlays.push(await this.restoreFace(rgb, alpha, regions[i]!, background, scale, weight, ctx.signal));
      }
      lap('faces');

      step(0.92, 'compose');
      const out = await compose(background, overlays, job.output, format, quality, Boolean(alpha));
      lap('compose');
      applied.weight = weight;
      return {
        output: { width: out.width, height: out.height, format, bytes: out.bytes },
        applied,
        timings,
        meta: {
          faces: regions.length,
          regions: regions.map((r) => [r.left, r.top, r.width, r.height]),
          scores: faces.slice(0, regions.length).map((f) => Math.round(f.score * 100) / 100),
          model: `esrgan-${this.esrgan.settings.model}`,
        },
      };
    } finally {
      await rm(background, { force: true });
    }
  };

  /** ESRGAN on one face region → colour-matched, feathered RGBA overlay at output scale. */
  private async restoreFace(rgb: RgbImage, alpha: Uint8Array | undefined, r: Region, background: string, scale: 1 | 2 | 4, weight: number, signal: AbortSignal): Promise<OverlayOptions> {
    let src = crop(rgb, r);
    const k = Math.min(1, this.settings.maxFacePx / Math.max(r.width, r.height));
    if (k < 1) src = await resizeRgb(src, Math.max(1, Math.round(r.width * k)), Math.max(1, Math.round(r.height * k)));
    const factor: Factor = scale === 4 ? 4 : 2;
    let up = await upscaleRgb(this.esrgan.runtime.tf, this.esrgan.models, src, factor, this.esrgan.settings, { signal });
    const W = r.width * scale;
    const H = r.height * scale;
    if (up.width !== W || up.height !== H) up = await resizeRgb(up, W, H);
    const left = r.left * scale;
    const top = r.top * scale;
    const ref = await sharp(background).extract({ left, top, width: W, height: H }).removeAlpha().raw().toBuffer();
    matchColour(up.data, ref);
    const feather = Math.round((Math.min(W, H) * FACE_MARGIN) / (1 + 2 * FACE_MARGIN));
    const mask = featherMask(W, H, feather, {
      left: r.left === 0,
      top: r.top === 0,
      right: r.left + r.width === rgb.width,
      bottom: r.top + r.height === rgb.height,
    });
    const a = alpha ? await resizeAlpha(cropPlane(alpha, rgb.width, r), r.width, r.height, W, H) : undefined;
    return { input: overlay(up.data, mask, weight, a), raw: { width: W, height: H, channels: 4 }, left, top };
  }

  close(): Promise<void> {
    return this.esrgan.close();
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

function cropPlane(plane: Uint8Array, width: number, r: Region): Uint8Array {
  const out = new Uint8Array(r.width * r.height);
  for (let y = 0; y < r.height; y++) out.set(plane.subarray((r.top + y) * width + r.left, (r.top + y) * width + r.left + r.width), y * r.width);
  return out;
}

async function resizeRgb(img: RgbImage, width: number, height: number): Promise<RgbImage> {
  const data = await sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } }).resize(width, height, { kernel: 'lanczos3' }).raw().toBuffer();
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width, height };
}

/** Lay the overlays on the background and encode exactly `output`. JPEG puts transparency on white. */
async function compose(background: string, overlays: OverlayOptions[], output: string, format: 'png' | 'jpeg' | 'webp', quality: number, hasAlpha: boolean): Promise<{ width: number; height: number; bytes: number }> {
  let img = sharp(background).composite(overlays);
  if (format === 'jpeg' && hasAlpha) {
    // flatten() runs before composite() in sharp's pipeline: materialise the composite first.
    const { data, info } = await img.raw().toBuffer({ resolveWithObject: true });
    img = sharp(data, { raw: { width: info.width, height: info.height, channels: info.channels } }).flatten({ background: '#ffffff' });
  }
  const encoded = format === 'jpeg' ? img.jpeg({ quality }) : format === 'webp' ? img.webp({ quality }) : img.png({ compressionLevel: 6 });
  const info = await encoded.toFile(output);
  return { width: info.width, height: info.height, bytes: info.size };
}
