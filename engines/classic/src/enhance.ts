import sharp, { type Sharp } from 'sharp';
import type { EngineCapabilities, JobRequest, OutputFormat } from '@photoenhance/contracts';
import { stages, type EngineContext, type EngineResult } from '@photoenhance/engine-protocol';
import { decodeFailure, openInput } from './input.js';
import { applyLevels, denoise, estimateNoise, lumaPlane, NOISE_THRESHOLD, planLevels, sharpenDetail, type Levels } from './filters.js';
import { upscaleLanczos, type Pixels } from './upscale.js';

/** The options this engine honours; GFPGAN-only ones (version, weight, bgUpsampler, …) are ignored. */
export const CLASSIC_CAPABILITIES: EngineCapabilities = {
  options: ['scale', 'format', 'quality', 'denoise', 'tone', 'sharpen'],
  scales: [1, 2, 4],
  formats: ['png', 'jpeg', 'webp'],
};

interface Raw {
  data: Buffer;
  info: { width: number; height: number; channels: 1 | 2 | 3 | 4 };
}

/**
 * The classic pipeline, one stage at a time so progress is real and cancel is honoured between stages; every step
 * but the upscale can be turned off per job (`denoise`, `tone`, `sharpen`: false), and each acts only when the photo
 * needs it (src/filters.ts):
 * decode (EXIF orientation applied, sRGB, 8 bit) → denoise (only when the measured noise is above NOISE_THRESHOLD;
 * edge-preserving) → tone (only for a washed-out photo: lifted black point) → sharpen (luma unsharp mask clamped to
 * the local range: no halos) → Lanczos-3 upscale on the pixel-centre grid (src/upscale.ts) + encode.
 * Progress stages: decode 0.02, denoise 0.15, tone 0.3, sharpen 0.35, upscale 0.45; timings decodeMs, denoiseMs,
 * toneMs, sharpenMs, upscaleMs (which includes encoding). `meta.noise` is the measured noise σ (8-bit luma levels).
 */
export async function enhance(job: JobRequest, ctx: EngineContext): Promise<EngineResult> {
  const { scale, format, quality } = job.options;
  const want = wantedSteps(job.options);
  const { step, lap, timings } = stages(ctx);

  step(0.02, 'decode');
  const decoded = await decode(job.input);
  const { width, height, channels } = decoded.info;
  lap('decode');

  const { img, luma, noise, denoised, levels } = prepare({ data: decoded.data, width, height, channels }, want, (stage) => {
    if (stage === 'tone') lap('denoise');
    step(stage === 'denoise' ? 0.15 : 0.3, stage);
  });
  lap('tone');

  step(0.35, 'sharpen');
  if (want.sharpen) sharpenDetail(img, undefined, undefined, luma);
  lap('sharpen');

  step(0.45, 'upscale');
  const up = upscaleLanczos(img, scale);
  const out = sharp(Buffer.from(up.data.buffer, up.data.byteOffset, up.data.length), {
    raw: { width: up.width, height: up.height, channels },
  });
  const info = await encoder(out, format, quality, channels).toFile(job.output);
  lap('upscale');

  // What was done, not only what was asked: a step asked for but not needed reports false.
  const steps = { denoise: denoised, tone: levels !== undefined, sharpen: want.sharpen };
  return {
    output: { width: info.width, height: info.height, format, bytes: info.size },
    applied: format === 'png' ? { scale, format, ...steps } : { scale, format, quality, ...steps },
    timings,
    meta: {
      input: { width, height, alpha: channels === 4 || channels === 2 },
      noise: Math.round(noise * 100) / 100,
      ...(levels ? { levels: { low: levels.low, high: levels.high, gain: Math.round(levels.gain * 1000) / 1000 } } : {}),
    },
  };
}

/** The enhancement steps a job allows (absent = on). */
export interface Steps {
  denoise: boolean;
  tone: boolean;
  sharpen: boolean;
}

export const wantedSteps = (o: Partial<Pick<JobRequest['options'], 'denoise' | 'tone' | 'sharpen'>>): Steps => ({
  denoise: o.denoise !== false,
  tone: o.tone !== false,
  sharpen: o.sharpen !== false,
});

export interface Prepared {
  img: Pixels;
  luma: Float32Array;
  /** Measured noise σ, 8-bit luma levels. */
  noise: number;
  denoised: boolean;
  levels?: Levels;
}

/**
 * The steps before detail and size: measure noise and denoise when noisy, then correct a washed-out photo's tones.
 * `img` may be changed in place. Shared with the portrait engine, whose faces and background start from these pixels.
 */
export function prepare(img: Pixels, want: Steps, onStage?: (stage: 'denoise' | 'tone') => void): Prepared {
  onStage?.('denoise');
  let luma = lumaPlane(img);
  const noise = estimateNoise(luma, img.width, img.height);
  const denoised = want.denoise && noise > NOISE_THRESHOLD;
  if (denoised) {
    img = denoise(img, noise, luma);
    luma = lumaPlane(img);
  }
  onStage?.('tone');
  const levels = want.tone ? planLevels(luma) : undefined;
  if (levels) {
    applyLevels(img, levels);
    luma = lumaPlane(img);
  }
  return { img, luma, noise, denoised, ...(levels ? { levels } : {}) };
}

/** Read and decode the input to 8-bit sRGB(A) pixels. Input problems become catalogue codes. */
async function decode(input: string): Promise<Raw> {
  const src = await openInput(input, { sequentialRead: true });
  try {
    return (await src.toColourspace('srgb').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true })) as Raw;
  } catch (err) {
    throw decodeFailure(err);
  }
}

function encoder(img: Sharp, format: OutputFormat, quality: number, channels: number): Sharp {
  switch (format) {
    case 'jpeg':
      // JPEG has no alpha: put transparent areas on white rather than on whatever colour hides under them.
      return (channels === 4 || channels === 2 ? img.flatten({ background: '#ffffff' }) : img).jpeg({ quality, mozjpeg: false });
    case 'webp':
      return img.webp({ quality });
    case 'png':
      return img.png({ compressionLevel: 6 });
  }
}
