/**
 * The quality benchmark's photo set: crops of the six face-api sample photos (real photos shipped in npm), some
 * around a face and some with none, as ground truth; each is shrunk ×2 and ×4 by a box filter (the exact mean of
 * each 2×2 / 4×4 block, so the degradation is known and the same for everyone) to make the inputs.
 * Face boxes come from face-api's SSD detector (the portrait engine's own loading code) run on the full sample.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { startRuntime } from '@photoenhance/engine-esrgan';
import { FaceDetector, type FaceBox } from '@photoenhance/engine-portrait';
import { samplePhoto } from '../../test/support/images.js';
import type { Box, Rgb } from './metrics.js';

export interface Crop {
  /** e.g. "s1-face", "s2-plain". */
  name: string;
  sample: number;
  /** Where the crop lies in the 1920 px sample. */
  region: Box;
  /** Faces fully inside the crop, in crop coordinates (empty for plain crops). */
  faces: Box[];
  truth: Rgb;
  truthFile: string;
  /** Input file (PNG, lossless) per scale. */
  inputs: Record<number, string>;
}

export const toRgb = (data: Buffer, width: number, height: number): Rgb => ({
  data: new Uint8Array(data.buffer, data.byteOffset, data.length),
  width,
  height,
});

export async function readRgb(file: string | Buffer): Promise<Rgb> {
  const { data, info } = await sharp(file).removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
  return toRgb(data, info.width, info.height);
}

/** Mean of each k×k block (width and height must divide by k): a box-filter shrink with no rounding bias beyond ±0.5. */
export function boxShrink(img: Rgb, k: number): Rgb {
  if (img.width % k || img.height % k) throw new RangeError(`${img.width}x${img.height} does not divide by ${k}`);
  const w = img.width / k;
  const h = img.height / k;
  const out = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let c = 0; c < 3; c++) {
        let sum = 0;
        for (let dy = 0; dy < k; dy++) for (let dx = 0; dx < k; dx++) sum += img.data[((y * k + dy) * img.width + x * k + dx) * 3 + c]!;
        out[(y * w + x) * 3 + c] = Math.round(sum / (k * k));
      }
    }
  }
  return { data: out, width: w, height: h };
}

const inside = (f: FaceBox, r: Box): boolean =>
  f.x >= r.left && f.y >= r.top && f.x + f.width <= r.left + r.width && f.y + f.height <= r.top + r.height;
const overlaps = (f: FaceBox, r: Box, margin: number): boolean =>
  f.x - margin < r.left + r.width && f.x + f.width + margin > r.left && f.y - margin < r.top + r.height && f.y + f.height + margin > r.top;

/** Gradient energy of a region (grey, every 2nd pixel): plain crops are chosen with detail, not sky. */
function detail(grey: Uint8Array, width: number, r: Box): number {
  let e = 0;
  for (let y = r.top; y < r.top + r.height - 1; y += 2) {
    for (let x = r.left; x < r.left + r.width - 1; x += 2) {
      const i = y * width + x;
      e += Math.abs(grey[i]! - grey[i + 1]!) + Math.abs(grey[i]! - grey[i + width]!);
    }
  }
  return e;
}

export interface SetOptions {
  dir: string;
  /** Crop size (divisible by 4). */
  width: number;
  height: number;
  /** Which samples get a face crop, and which a plain (no face) crop. */
  faceSamples: number[];
  plainSamples: number[];
  scales: number[];
}

export async function buildSet(o: SetOptions): Promise<Crop[]> {
  if (o.width % 4 || o.height % 4) throw new RangeError('crop size must divide by 4');
  const runtime = await startRuntime();
  const detector = await FaceDetector.load(runtime.tf, 0.5);
  const crops: Crop[] = [];
  const samples = [...new Set([...o.faceSamples, ...o.plainSamples])].sort();
  for (const n of samples) {
    const full = await readRgb(samplePhoto(n));
    const faces = await detector.detect(full, 50);
    const grey = await sharp(Buffer.from(full.data), { raw: { width: full.width, height: full.height, channels: 3 } })
      .greyscale()
      .raw()
      .toBuffer();
    const clamp = (v: number, max: number): number => Math.max(0, Math.min(max, Math.round(v)));
    if (o.faceSamples.includes(n) && faces.length > 0) {
      // Centred on the best face (the detector sorts by score).
      const f = faces[0]!;
      const left = clamp(f.x + f.width / 2 - o.width / 2, full.width - o.width);
      const top = clamp(f.y + f.height / 2 - o.height / 2, full.height - o.height);
      crops.push(await makeCrop(o, n, 'face', full, { left, top, width: o.width, height: o.height }, faces));
    }
    if (o.plainSamples.includes(n)) {
      // The most detailed window on a coarse grid that no face (with a margin) touches.
      let best: Box | undefined;
      let bestE = -1;
      for (let top = 0; top + o.height <= full.height; top += o.height / 4) {
        for (let left = 0; left + o.width <= full.width; left += o.width / 4) {
          const r = { left, top, width: o.width, height: o.height };
          if (faces.some((f) => overlaps(f, r, Math.max(f.width, f.height)))) continue;
          const e = detail(new Uint8Array(grey.buffer, grey.byteOffset, grey.length), full.width, r);
          if (e > bestE) {
            bestE = e;
            best = r;
          }
        }
      }
      if (best) crops.push(await makeCrop(o, n, 'plain', full, best, []));
    }
  }
  return crops;
}

async function makeCrop(o: SetOptions, sample: number, kind: 'face' | 'plain', full: Rgb, region: Box, faces: FaceBox[]): Promise<Crop> {
  const truth: Rgb = { data: new Uint8Array(region.width * region.height * 3), width: region.width, height: region.height };
  for (let y = 0; y < region.height; y++) {
    const s = ((region.top + y) * full.width + region.left) * 3;
    truth.data.set(full.data.subarray(s, s + region.width * 3), y * region.width * 3);
  }
  const name = `s${sample}-${kind}`;
  const truthFile = join(o.dir, `${name}.png`);
  await writeRaw(truth, truthFile);
  const inputs: Record<number, string> = {};
  for (const k of o.scales) {
    inputs[k] = join(o.dir, `${name}-x${k}.png`);
    await writeRaw(boxShrink(truth, k), inputs[k]);
  }
  const mine =
    kind === 'face'
      ? faces
          .filter((f) => inside(f, region))
          .map((f) => ({ left: f.x - region.left, top: f.y - region.top, width: f.width, height: f.height }))
      : [];
  return { name, sample, region, faces: mine, truth, truthFile, inputs };
}

export async function writeRaw(img: Rgb, file: string): Promise<void> {
  const png = await sharp(Buffer.from(img.data.buffer, img.data.byteOffset, img.data.length), {
    raw: { width: img.width, height: img.height, channels: 3 },
  })
    .png()
    .toBuffer();
  await writeFile(file, png);
}
