import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { applyLevels, denoise, estimateNoise, lumaPlane, NOISE_THRESHOLD, planLevels, sharpenDetail } from '../src/filters.js';
import type { Pixels } from '../src/upscale.js';
import { addNoise, samplePhoto } from './helpers.js';

let photo: Pixels;
beforeAll(async () => {
  const { data, info } = await sharp(samplePhoto(3))
    .extract({ left: 400, top: 250, width: 480, height: 360 })
    .raw()
    .toBuffer({ resolveWithObject: true });
  photo = {
    data: new Uint8Array(data.buffer, data.byteOffset, data.length),
    width: info.width,
    height: info.height,
    channels: info.channels,
  };
});

const std = (img: Pixels, x0: number, x1: number, y0: number, y1: number, c = 0): number => {
  let s = 0,
    q = 0,
    n = 0;
  for (let y = y0; y < y1; y++)
    for (let x = x0; x < x1; x++) {
      const v = img.data[(y * img.width + x) * img.channels + c]!;
      s += v;
      q += v * v;
      n++;
    }
  return Math.sqrt(q / n - (s / n) ** 2);
};

/** Left half `a`, right half `b`: a vertical step edge. */
const step = (a: number, b: number, w = 40, h = 30): Pixels => {
  const data = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) data.fill(x < w / 2 ? a : b, (y * w + x) * 3, (y * w + x) * 3 + 3);
  return { data, width: w, height: h, channels: 3 };
};

describe('noise estimate', () => {
  it('reads a clean real photo as clean and finds added noise at its luma σ, whatever the photo shows', () => {
    const clean = estimateNoise(lumaPlane(photo), photo.width, photo.height);
    expect(clean).toBeLessThan(NOISE_THRESHOLD);
    for (const sigma of [4, 8, 16]) {
      // Independent noise of σ in R, G, B is σ·0.668 in BT.601 luma.
      const found = estimateNoise(lumaPlane(addNoise(photo, sigma)), photo.width, photo.height);
      expect(found).toBeGreaterThan(sigma * 0.668 * 0.8);
      expect(found).toBeLessThan(sigma * 0.668 * 1.25);
    }
  });
});

describe('denoise', () => {
  it('flattens noise in flat areas but keeps a step edge', () => {
    const noisy = addNoise(step(60, 180), 8);
    const sigma = estimateNoise(lumaPlane(noisy), noisy.width, noisy.height);
    const out = denoise(noisy, sigma);
    expect(std(out, 2, 16, 2, 28)).toBeLessThan(std(noisy, 2, 16, 2, 28) / 2);
    // The edge: columns right beside it keep their sides' levels.
    const col = (img: Pixels, x: number): number => {
      let s = 0;
      for (let y = 0; y < img.height; y++) s += img.data[(y * img.width + x) * 3]!;
      return s / img.height;
    };
    expect(col(out, 20) - col(out, 19)).toBeGreaterThan(0.9 * 120);
  });
});

describe('tone', () => {
  it('leaves a well-exposed real photo alone and stretches a washed-out copy of it', () => {
    expect(planLevels(lumaPlane(photo))).toBeUndefined();
    const washed: Pixels = { ...photo, data: photo.data.map((v) => 70 + v * 0.55) };
    const levels = planLevels(lumaPlane(washed));
    expect(levels).toBeDefined();
    applyLevels(washed, levels!);
    const after = planLevels(lumaPlane(washed));
    expect(after).toBeUndefined(); // no longer washed out
    const l = lumaPlane(washed).sort();
    expect(l[Math.floor(l.length * 0.005)]!).toBeLessThan(20);
  });

  it('keeps hues: a grey stays grey', () => {
    const grey: Pixels = { data: new Uint8Array(30 * 30 * 3), width: 30, height: 30, channels: 3 };
    for (let i = 0; i < 900; i++) grey.data.fill(80 + (i % 90), i * 3, i * 3 + 3);
    applyLevels(grey, planLevels(lumaPlane(grey))!);
    for (let i = 0; i < 900; i++) expect(new Set(grey.data.subarray(i * 3, i * 3 + 3)).size).toBe(1);
  });
});

describe('sharpen', () => {
  it('steepens an edge without a halo: nothing overshoots the two sides by more than 2 levels', () => {
    // A soft edge (a ramp over 4 px) between 50 and 200.
    const w = 40,
      h = 10;
    const data = new Uint8Array(w * h * 3);
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++)
        data.fill(Math.round(50 + 150 * Math.min(1, Math.max(0, (x - 18) / 4))), (y * w + x) * 3, (y * w + x) * 3 + 3);
    const img: Pixels = { data, width: w, height: h, channels: 3 };
    const before = img.data.slice();
    sharpenDetail(img, 1, 1.5);
    expect(Math.min(...img.data)).toBeGreaterThanOrEqual(48);
    expect(Math.max(...img.data)).toBeLessThanOrEqual(202);
    // Steeper: the ramp's first step moved down and its last step up.
    const at = (a: Uint8Array, x: number): number => a[(5 * w + x) * 3]!;
    expect(at(img.data, 19)).toBeLessThan(at(before, 19));
    expect(at(img.data, 21)).toBeGreaterThan(at(before, 21));
  });

  it('carries alpha through untouched', () => {
    const rgba: Pixels = { data: new Uint8Array(20 * 20 * 4), width: 20, height: 20, channels: 4 };
    for (let i = 0; i < 400; i++) rgba.data.set([(i * 37) % 256, (i * 11) % 256, 90, (i * 5) % 256], i * 4);
    const alpha = rgba.data.filter((_, i) => i % 4 === 3);
    sharpenDetail(rgba);
    expect(rgba.data.filter((_, i) => i % 4 === 3)).toEqual(alpha);
    const d = denoise(rgba, 5);
    expect(d.data.filter((_, i) => i % 4 === 3)).toEqual(alpha);
  });
});
