/**
 * Image quality metrics for the quality benchmark, on interleaved 8-bit RGB pixels of the same size.
 *  - PSNR over R, G and B together (what ImageMagick's `compare -metric PSNR` reports for an RGB image);
 *  - SSIM as Wang et al. 2004 define it: on luma (BT.601), an 11×11 Gaussian window with σ = 1.5, K1 = 0.01,
 *    K2 = 0.03, L = 255, averaged over the window centres (the SSIM map).
 * A box limits either to a region (face regions); the SSIM map is computed once for the whole image and averaged over
 * the box, so a box near the border still sees real neighbours.
 */

export interface Rgb {
  /** Interleaved RGB, row-major, width × height × 3 bytes. */
  data: Uint8Array;
  width: number;
  height: number;
}

export interface Box {
  left: number;
  top: number;
  width: number;
  height: number;
}

function sameSize(a: Rgb, b: Rgb): void {
  if (a.width !== b.width || a.height !== b.height || a.data.length !== b.data.length || a.data.length !== a.width * a.height * 3) {
    throw new RangeError(
      `images differ in size or are not RGB: ${a.width}x${a.height} (${a.data.length} B) vs ${b.width}x${b.height} (${b.data.length} B)`,
    );
  }
}

/** The box clamped to the image; the whole image without one. */
function clampBox(img: Rgb, box?: Box): Box {
  if (!box) return { left: 0, top: 0, width: img.width, height: img.height };
  const left = Math.max(0, Math.floor(box.left));
  const top = Math.max(0, Math.floor(box.top));
  const right = Math.min(img.width, Math.ceil(box.left + box.width));
  const bottom = Math.min(img.height, Math.ceil(box.top + box.height));
  if (right <= left || bottom <= top) throw new RangeError(`box ${JSON.stringify(box)} lies outside the ${img.width}x${img.height} image`);
  return { left, top, width: right - left, height: bottom - top };
}

/** Mean squared error over RGB in the box. */
export function mse(a: Rgb, b: Rgb, box?: Box): number {
  sameSize(a, b);
  const r = clampBox(a, box);
  let se = 0;
  for (let y = r.top; y < r.top + r.height; y++) {
    const end = (y * a.width + r.left + r.width) * 3;
    for (let i = (y * a.width + r.left) * 3; i < end; i++) {
      const d = a.data[i]! - b.data[i]!;
      se += d * d;
    }
  }
  return se / (r.width * r.height * 3);
}

/** PSNR in dB over RGB (peak 255); Infinity for identical pixels. */
export function psnr(a: Rgb, b: Rgb, box?: Box): number {
  const e = mse(a, b, box);
  return e === 0 ? Number.POSITIVE_INFINITY : 10 * Math.log10((255 * 255) / e);
}

/** BT.601 luma as floats (what SSIM is conventionally computed on for colour photos). */
export function luma(img: Rgb): Float32Array {
  const n = img.width * img.height;
  const out = new Float32Array(n);
  const d = img.data;
  for (let i = 0, p = 0; i < n; i++, p += 3) out[i] = 0.299 * d[p]! + 0.587 * d[p + 1]! + 0.114 * d[p + 2]!;
  return out;
}

const WINDOW_RADIUS = 5;
const WINDOW_SIGMA = 1.5;
const C1 = (0.01 * 255) ** 2;
const C2 = (0.03 * 255) ** 2;

function gaussianWeights(): Float32Array {
  const w = new Float32Array(2 * WINDOW_RADIUS + 1);
  let sum = 0;
  for (let i = -WINDOW_RADIUS; i <= WINDOW_RADIUS; i++)
    sum += w[i + WINDOW_RADIUS] = Math.exp(-(i * i) / (2 * WINDOW_SIGMA * WINDOW_SIGMA));
  for (let i = 0; i < w.length; i++) w[i]! /= sum;
  return w;
}

/**
 * Separable Gaussian blur of a plane; only window centres whose whole window lies inside the image are computed
 * ("valid" convolution, as in the reference implementation), so the result is (width − 10) × (height − 10).
 */
function blurValid(src: Float32Array, width: number, height: number, w: Float32Array): Float32Array {
  const R = WINDOW_RADIUS;
  const vw = width - 2 * R;
  const vh = height - 2 * R;
  const tmp = new Float32Array(vw * height);
  for (let y = 0; y < height; y++) {
    const row = y * width;
    for (let x = 0; x < vw; x++) {
      let acc = 0;
      for (let k = 0; k < w.length; k++) acc += w[k]! * src[row + x + k]!;
      tmp[y * vw + x] = acc;
    }
  }
  const out = new Float32Array(vw * vh);
  for (let y = 0; y < vh; y++) {
    for (let x = 0; x < vw; x++) {
      let acc = 0;
      for (let k = 0; k < w.length; k++) acc += w[k]! * tmp[(y + k) * vw + x]!;
      out[y * vw + x] = acc;
    }
  }
  return out;
}

export interface SsimMap {
  /** SSIM at each window centre; the map's (0, 0) is the image's (5, 5). */
  map: Float32Array;
  width: number;
  height: number;
}

/** The SSIM map of two same-size RGB images (luma, Gaussian window). Images must be at least 11 × 11. */
export function ssimMap(a: Rgb, b: Rgb): SsimMap {
  sameSize(a, b);
  if (a.width < 2 * WINDOW_RADIUS + 1 || a.height < 2 * WINDOW_RADIUS + 1)
    throw new RangeError(`SSIM needs at least 11x11 pixels; got ${a.width}x${a.height}`);
  const { width, height } = a;
  const x = luma(a);
  const y = luma(b);
  const n = width * height;
  const xx = new Float32Array(n);
  const yy = new Float32Array(n);
  const xy = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    xx[i] = x[i]! * x[i]!;
    yy[i] = y[i]! * y[i]!;
    xy[i] = x[i]! * y[i]!;
  }
  const w = gaussianWeights();
  const mx = blurValid(x, width, height, w);
  const my = blurValid(y, width, height, w);
  const sxx = blurValid(xx, width, height, w);
  const syy = blurValid(yy, width, height, w);
  const sxy = blurValid(xy, width, height, w);
  const map = new Float32Array(mx.length);
  for (let i = 0; i < map.length; i++) {
    const ux = mx[i]!;
    const uy = my[i]!;
    const vx = sxx[i]! - ux * ux;
    const vy = syy[i]! - uy * uy;
    const cov = sxy[i]! - ux * uy;
    map[i] = ((2 * ux * uy + C1) * (2 * cov + C2)) / ((ux * ux + uy * uy + C1) * (vx + vy + C2));
  }
  return { map, width: width - 2 * WINDOW_RADIUS, height: height - 2 * WINDOW_RADIUS };
}

/** Mean of an SSIM map over a box given in image coordinates (window centres inside the box). */
export function meanSsim(m: SsimMap, box?: Box): number {
  const R = WINDOW_RADIUS;
  const full = { left: 0, top: 0, width: m.width + 2 * R, height: m.height + 2 * R };
  const b = box ?? full;
  const left = Math.max(0, Math.floor(b.left) - R);
  const top = Math.max(0, Math.floor(b.top) - R);
  const right = Math.min(m.width, Math.ceil(b.left + b.width) - R);
  const bottom = Math.min(m.height, Math.ceil(b.top + b.height) - R);
  if (right <= left || bottom <= top) throw new RangeError(`box ${JSON.stringify(b)} has no SSIM window centre inside the image`);
  let sum = 0;
  for (let y = top; y < bottom; y++) for (let x = left; x < right; x++) sum += m.map[y * m.width + x]!;
  return sum / ((right - left) * (bottom - top));
}

/** Mean SSIM of two images (over a box, if given). */
export function ssim(a: Rgb, b: Rgb, box?: Box): number {
  return meanSsim(ssimMap(a, b), box);
}
