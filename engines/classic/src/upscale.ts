/**
 * Lanczos-3 upscaling by an integer factor, with the pixel-centre convention ImageMagick uses: output pixel x samples
 * the input at (x + 0.5) / k − 0.5.
 *
 * Why not sharp's resize: for upsizing, libvips ignores `kernel` (lanczos3, cubic, mitchell give identical pixels)
 * and interpolates bicubically with its sample grid a quarter input pixel (half an output pixel at ×2) off the
 * centre convention. On a box-shrunk photo brought back ×2 that shift alone costs ~5 dB PSNR against ImageMagick's
 * Lanczos (bench/quality.ts, docs/quality.md). sharp's `affine` with `idx`/`idy` can undo the shift but still only
 * offers bicubic-family interpolators (~0.6 dB below Lanczos). So the resampling is done here, separably: each
 * output row is the vertical 6-tap sum of horizontally upscaled input rows, kept in a small ring (8 rows), so the
 * extra memory is the output image plus a few rows of floats.
 */

export interface Pixels {
  /** Interleaved 8-bit samples, row-major. */
  data: Uint8Array;
  width: number;
  height: number;
  channels: number;
}

const TAPS = 6;
const RING = 8;

function sinc(x: number): number {
  if (x === 0) return 1;
  const p = Math.PI * x;
  return Math.sin(p) / p;
}

/** Lanczos-3 window: sinc(x)·sinc(x/3) for |x| < 3. */
export function lanczos3(x: number): number {
  const a = Math.abs(x);
  return a < 3 ? sinc(a) * sinc(a / 3) : 0;
}

/** For each of the k output phases: the first input tap (relative to the input index) and 6 normalised weights. */
function phases(k: number): { first: Int32Array; weights: Float32Array } {
  const first = new Int32Array(k);
  const weights = new Float32Array(k * TAPS);
  for (let p = 0; p < k; p++) {
    const c = (p + 0.5) / k - 0.5; // sample position relative to input pixel i, for output pixel k·i + p
    const f = Math.floor(c) - 2;
    first[p] = f;
    let sum = 0;
    for (let t = 0; t < TAPS; t++) sum += weights[p * TAPS + t] = lanczos3(c - (f + t));
    for (let t = 0; t < TAPS; t++) weights[p * TAPS + t]! /= sum;
  }
  return { first, weights };
}

/**
 * Upscale by `k` (an integer ≥ 1) with Lanczos-3. Images with alpha (2 or 4 channels) are resampled premultiplied,
 * so colour under transparent pixels does not bleed into visible ones.
 */
export function upscaleLanczos(img: Pixels, k: number): Pixels {
  const { width: W, height: H, channels: ch } = img;
  if (!Number.isInteger(k) || k < 1) throw new RangeError(`upscale factor must be a positive integer; received ${k}`);
  if (img.data.length !== W * H * ch) throw new RangeError(`pixel buffer holds ${img.data.length} bytes, expected ${W}x${H}x${ch}`);
  if (k === 1) return img;
  const alpha = ch === 2 || ch === 4;
  const { first, weights } = phases(k);
  const OW = W * k;
  const OH = H * k;
  const rowLen = OW * ch;
  const ring = new Float32Array(RING * rowLen);
  const ringRow = new Int32Array(RING).fill(-1);
  // One input row as floats (premultiplied where there is alpha), with 3 edge-replicated pixels on each side so the
  // taps never need clamping.
  const PAD = 3;
  const src = new Float32Array((W + 2 * PAD) * ch);

  /** Horizontally upscaled input row y (clamped to the image), from the ring or computed into it. */
  const hrow = (y: number): number => {
    const yy = y < 0 ? 0 : y >= H ? H - 1 : y;
    const slot = yy % RING;
    const off = slot * rowLen;
    if (ringRow[slot] === yy) return off;
    const base = yy * W * ch;
    for (let x = -PAD; x < W + PAD; x++) {
      const s = base + (x < 0 ? 0 : x >= W ? W - 1 : x) * ch;
      const d = (x + PAD) * ch;
      if (alpha) {
        const a = img.data[s + ch - 1]! / 255;
        for (let c = 0; c < ch - 1; c++) src[d + c] = img.data[s + c]! * a;
        src[d + ch - 1] = img.data[s + ch - 1]!;
      } else {
        for (let c = 0; c < ch; c++) src[d + c] = img.data[s + c]!;
      }
    }
    for (let p = 0; p < k; p++) {
      const w = p * TAPS;
      const w0 = weights[w]!,
        w1 = weights[w + 1]!,
        w2 = weights[w + 2]!,
        w3 = weights[w + 3]!,
        w4 = weights[w + 4]!,
        w5 = weights[w + 5]!;
      for (let x = 0; x < W; x++) {
        const s0 = (x + first[p]! + PAD) * ch;
        const o = off + (x * k + p) * ch;
        for (let c = 0; c < ch; c++) {
          const i = s0 + c;
          ring[o + c] =
            w0 * src[i]! +
            w1 * src[i + ch]! +
            w2 * src[i + 2 * ch]! +
            w3 * src[i + 3 * ch]! +
            w4 * src[i + 4 * ch]! +
            w5 * src[i + 5 * ch]!;
        }
      }
    }
    ringRow[slot] = yy;
    return off;
  };

  const out = new Uint8Array(OW * OH * ch);
  // Writing through a clamped view rounds and clamps to 0..255 natively (much faster than doing it by hand).
  const outc = new Uint8ClampedArray(out.buffer, out.byteOffset, out.length);
  const rows = new Int32Array(TAPS);
  for (let y = 0; y < H; y++) {
    for (let p = 0; p < k; p++) {
      const f = y + first[p]!;
      for (let t = 0; t < TAPS; t++) rows[t] = hrow(f + t);
      const w = p * TAPS;
      const w0 = weights[w]!,
        w1 = weights[w + 1]!,
        w2 = weights[w + 2]!,
        w3 = weights[w + 3]!,
        w4 = weights[w + 4]!,
        w5 = weights[w + 5]!;
      const r0 = rows[0]!,
        r1 = rows[1]!,
        r2 = rows[2]!,
        r3 = rows[3]!,
        r4 = rows[4]!,
        r5 = rows[5]!;
      const o = (y * k + p) * rowLen;
      if (alpha) {
        for (let i = 0; i < rowLen; i += ch) {
          let a =
            w0 * ring[r0 + i + ch - 1]! +
            w1 * ring[r1 + i + ch - 1]! +
            w2 * ring[r2 + i + ch - 1]! +
            w3 * ring[r3 + i + ch - 1]! +
            w4 * ring[r4 + i + ch - 1]! +
            w5 * ring[r5 + i + ch - 1]!;
          a = Math.min(Math.max(a, 0), 255);
          outc[o + i + ch - 1] = a;
          const inv = a > 0 ? 255 / a : 0;
          for (let c = 0; c < ch - 1; c++) {
            const j = i + c;
            const v =
              (w0 * ring[r0 + j]! +
                w1 * ring[r1 + j]! +
                w2 * ring[r2 + j]! +
                w3 * ring[r3 + j]! +
                w4 * ring[r4 + j]! +
                w5 * ring[r5 + j]!) *
              inv;
            outc[o + j] = v;
          }
        }
      } else {
        for (let j = 0; j < rowLen; j++) {
          outc[o + j] =
            w0 * ring[r0 + j]! + w1 * ring[r1 + j]! + w2 * ring[r2 + j]! + w3 * ring[r3 + j]! + w4 * ring[r4 + j]! + w5 * ring[r5 + j]!;
        }
      }
    }
  }
  return { data: out, width: OW, height: OH, channels: ch };
}
