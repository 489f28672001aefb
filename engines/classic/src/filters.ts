/**
 * The classic engine's enhancement steps, on 8-bit interleaved pixels at the input's resolution (cheap: a 1920 px
 * photo is 2.5 MP; the upscale comes after):
 *  - noise estimate (robust, edges do not count) → an edge-preserving denoise only when the photo is noisy;
 *  - tone: a levels stretch only when the histogram says the photo is washed out (lifted blacks, a narrow range);
 *  - detail: an unsharp mask on luminance with its result clamped to the local 3×3 range, so it cannot halo.
 * Colour channels are the first 1 or 3; an alpha channel (2 or 4 channels) is carried through untouched.
 */
import type { Pixels } from './upscale.js';

/** Below this noise (luma σ in 8-bit levels) a photo is not denoised: the face-api JPEGs measure 0–0.5. */
export const NOISE_THRESHOLD = 2;

const colourBands = (ch: number): number => (ch >= 3 ? 3 : 1);

/** BT.601 luma plane of the colour channels. */
export function lumaPlane(img: Pixels): Float32Array {
  const { width, height, channels: ch, data } = img;
  const n = width * height;
  const y = new Float32Array(n);
  if (colourBands(ch) === 1) {
    for (let i = 0; i < n; i++) y[i] = data[i * ch]!;
  } else {
    for (let i = 0, p = 0; i < n; i++, p += ch) y[i] = 0.299 * data[p]! + 0.587 * data[p + 1]! + 0.114 * data[p + 2]!;
  }
  return y;
}

/**
 * Noise σ (8-bit levels) from the luma plane, after Immerkær (1996): the response to a 3×3 mask that cancels
 * smooth shading (and is ⟂ to planes) has σ·6 spread for white noise; its *median* absolute value (÷ 0.6745·6) is
 * not fooled by the edges and texture a photo is mostly made of, which a mean would count as noise.
 */
export function estimateNoise(luma: Float32Array, width: number, height: number): number {
  if (width < 3 || height < 3) return 0;
  // Histogram of |response| in quarter levels: the median without sorting millions of values.
  const BINS = 4 * 4096;
  const hist = new Uint32Array(BINS);
  let n = 0;
  for (let y = 1; y < height - 1; y++) {
    const r0 = (y - 1) * width,
      r1 = y * width,
      r2 = (y + 1) * width;
    for (let x = 1; x < width - 1; x++) {
      const v =
        luma[r0 + x - 1]! -
        2 * luma[r0 + x]! +
        luma[r0 + x + 1]! -
        2 * (luma[r1 + x - 1]! - 2 * luma[r1 + x]! + luma[r1 + x + 1]!) +
        luma[r2 + x - 1]! -
        2 * luma[r2 + x]! +
        luma[r2 + x + 1]!;
      const b = Math.min(BINS - 1, Math.round(Math.abs(v) * 4));
      hist[b]!++;
      n++;
    }
  }
  let seen = 0;
  for (let b = 0; b < BINS; b++) {
    seen += hist[b]!;
    if (seen * 2 >= n) return b / 4 / (0.6745 * 6);
  }
  return 0;
}

/**
 * Edge-preserving denoise: a joint bilateral filter (5×5, spatial σ 1.2) whose range weight is set by the measured
 * noise: neighbours that differ from the centre (in luma) by much more than the noise — an edge — barely count.
 * Returns a new image; alpha copied.
 */
export function denoise(img: Pixels, sigmaNoise: number, luma = lumaPlane(img)): Pixels {
  const { width: W, height: H, channels: ch, data } = img;
  const bands = colourBands(ch);
  const R = 2;
  const spatial = new Float32Array((2 * R + 1) ** 2);
  for (let dy = -R; dy <= R; dy++)
    for (let dx = -R; dx <= R; dx++) spatial[(dy + R) * (2 * R + 1) + dx + R] = Math.exp(-(dx * dx + dy * dy) / (2 * 1.2 * 1.2));
  // Range σ 2.5× the noise: flat areas average over the whole window; a step of a few noise σ is kept.
  const rs = 2.5 * sigmaNoise;
  const LUT = 1024;
  const rangeLut = new Float32Array(LUT);
  for (let i = 0; i < LUT; i++) rangeLut[i] = Math.exp(-((i / 4) ** 2) / (2 * rs * rs));
  const out = new Uint8Array(data.length);
  const oc = new Uint8ClampedArray(out.buffer, out.byteOffset, out.length);
  const acc = new Float32Array(bands);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const i = y * W + x;
      const c0 = luma[i]!;
      let wsum = 0;
      acc.fill(0);
      for (let dy = -R; dy <= R; dy++) {
        const yy = y + dy < 0 ? 0 : y + dy >= H ? H - 1 : y + dy;
        for (let dx = -R; dx <= R; dx++) {
          const xx = x + dx < 0 ? 0 : x + dx >= W ? W - 1 : x + dx;
          const j = yy * W + xx;
          const d = Math.abs(luma[j]! - c0) * 4;
          const w = spatial[(dy + R) * (2 * R + 1) + dx + R]! * (d < LUT ? rangeLut[d | 0]! : 0);
          wsum += w;
          for (let c = 0; c < bands; c++) acc[c]! += w * data[j * ch + c]!;
        }
      }
      for (let c = 0; c < bands; c++) oc[i * ch + c] = acc[c]! / wsum;
      if (ch === 2 || ch === 4) out[i * ch + ch - 1] = data[i * ch + ch - 1]!;
    }
  }
  return { data: out, width: W, height: H, channels: ch };
}

export interface Levels {
  /** Luma percentiles (0.5 % and 99.5 %) before. */
  low: number;
  high: number;
  /** The linear map applied to every colour channel: v' = (v − low) · gain + to. */
  gain: number;
  to: number;
}

/** Where a stretched photo's 0.5 % luma percentile (its black point) ends up, and the most its white point may reach. */
const TARGET_LOW = 4;
const TARGET_HIGH = 250;
/**
 * Washed out = the black point lifted this far (haze, fog, a faded print), or the whole 0.5–99.5 % range this narrow.
 * Deliberately far out: a bright close-up of a face has no deep blacks either (28–36 measured on the face-api crops)
 * and must not be "corrected"; a histogram cannot tell the two apart below this.
 */
const LIFTED_BLACK = 48;
const NARROW_RANGE = 128;
const MAX_GAIN = 1.4;

/**
 * Decide a levels stretch from the luma histogram, or undefined to leave the tones exactly as they are — which is the
 * case for most photos, including dark (low-key) ones whose blacks are deep (their mood is meant) and bright
 * close-ups. Only a washed-out photo (haze, a faded print: see LIFTED_BLACK) is corrected: its black point goes down
 * to 4, the white point goes up by as much (at most to 250; never down), and the gain is capped at 1.4 so a nearly
 * flat image is not blown into noise.
 */
export function planLevels(luma: Float32Array): Levels | undefined {
  const hist = new Uint32Array(256);
  for (let i = 0; i < luma.length; i++) hist[Math.min(255, Math.max(0, Math.round(luma[i]!)))]!++;
  const pct = (q: number): number => {
    let seen = 0;
    for (let v = 0; v < 256; v++) {
      seen += hist[v]!;
      if (seen >= q * luma.length) return v;
    }
    return 255;
  };
  const low = pct(0.005);
  const high = pct(0.995);
  if ((low <= LIFTED_BLACK && high - low >= NARROW_RANGE) || high - low < 8) return undefined;
  const newHigh = Math.max(high, Math.min(TARGET_HIGH, high + (low - TARGET_LOW)));
  const gain = Math.min(MAX_GAIN, (newHigh - TARGET_LOW) / (high - low));
  return { low, high, gain, to: TARGET_LOW };
}

/** Apply a levels map to the colour channels in place (the same map for R, G, B, so hues stay). */
export function applyLevels(img: Pixels, l: Levels): void {
  const lut = new Uint8ClampedArray(256);
  for (let v = 0; v < 256; v++) lut[v] = (v - l.low) * l.gain + l.to;
  const { channels: ch, data } = img;
  const bands = colourBands(ch);
  for (let p = 0; p < data.length; p += ch) for (let c = 0; c < bands; c++) data[p + c] = lut[data[p + c]!]!;
}

/** Detail step settings, chosen on the quality benchmark's photos (docs/quality.md). */
export const SHARPEN_SIGMA = 0.5;
export const SHARPEN_AMOUNT = 0.45;
/** How far past the local 3×3 range a sharpened value may go (levels): 0 would clip every edge flat. */
const HALO_SLACK = 2;

/**
 * Unsharp mask on luminance before upscaling: the luma detail (luma − Gaussian blur) × amount is added to each colour
 * channel (so colours do not fringe), and every result is clamped to the min..max of its 3×3 neighbourhood ± 2
 * levels — an edge gets steeper but never gains the bright/dark rim (halo) a plain unsharp mask draws beside it.
 * In place.
 */
export function sharpenDetail(img: Pixels, sigma = SHARPEN_SIGMA, amount = SHARPEN_AMOUNT, luma = lumaPlane(img)): void {
  const { width: W, height: H, channels: ch, data } = img;
  const bands = colourBands(ch);
  const r = Math.max(1, Math.ceil(sigma * 3));
  const k = new Float32Array(2 * r + 1);
  let s = 0;
  for (let i = -r; i <= r; i++) s += k[i + r] = Math.exp(-(i * i) / (2 * sigma * sigma));
  for (let i = 0; i < k.length; i++) k[i]! /= s;
  const tmp = new Float32Array(W * H);
  for (let y = 0; y < H; y++)
    for (let x = 0; x < W; x++) {
      let a = 0;
      for (let t = -r; t <= r; t++) a += k[t + r]! * luma[y * W + (x + t < 0 ? 0 : x + t >= W ? W - 1 : x + t)]!;
      tmp[y * W + x] = a;
    }
  const src = data.slice();
  // 3×3 min and max, separably: the horizontal 3-min/3-max of every row first, then 3 rows of those.
  const hmin = new Uint8Array(src.length);
  const hmax = new Uint8Array(src.length);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const i = (y * W + x) * ch;
      const a = (y * W + (x > 0 ? x - 1 : 0)) * ch;
      const b = (y * W + (x < W - 1 ? x + 1 : W - 1)) * ch;
      for (let c = 0; c < bands; c++) {
        const p = src[a + c]!,
          q = src[i + c]!,
          r2 = src[b + c]!;
        hmin[i + c] = Math.min(p, q, r2);
        hmax[i + c] = Math.max(p, q, r2);
      }
    }
  }
  const oc = new Uint8ClampedArray(data.buffer, data.byteOffset, data.length);
  for (let y = 0; y < H; y++) {
    const up = (y > 0 ? y - 1 : 0) * W * ch;
    const down = (y < H - 1 ? y + 1 : H - 1) * W * ch;
    const row = y * W * ch;
    for (let x = 0; x < W; x++) {
      let b = 0;
      for (let t = -r; t <= r; t++) b += k[t + r]! * tmp[(y + t < 0 ? 0 : y + t >= H ? H - 1 : y + t) * W + x]!;
      const i = y * W + x;
      const d = amount * (luma[i]! - b);
      for (let c = 0; c < bands; c++) {
        const o = x * ch + c;
        let lo = hmin[row + o]!,
          hi = hmax[row + o]!;
        const l1 = hmin[up + o]!,
          l2 = hmin[down + o]!,
          h1 = hmax[up + o]!,
          h2 = hmax[down + o]!;
        if (l1 < lo) lo = l1;
        if (l2 < lo) lo = l2;
        if (h1 > hi) hi = h1;
        if (h2 > hi) hi = h2;
        const v = src[i * ch + c]! + d;
        oc[i * ch + c] = Math.min(Math.max(v, lo - HALO_SLACK), hi + HALO_SLACK);
      }
    }
  }
}
