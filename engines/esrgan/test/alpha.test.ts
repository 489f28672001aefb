import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { resizeAlpha } from '../src/image-io.js';

describe('resizeAlpha', () => {
  it('puts an upscaled alpha edge where the colour edge is (pixel-centre grid, as the model output)', async () => {
    // Transparent left half, opaque right half: the edge lies between input pixels 7 and 8, i.e. between output
    // pixels 15 and 16 at ×2 (31 and 32 at ×4). Centred resampling is symmetric about it.
    const w = 16,
      h = 4;
    const alpha = new Uint8Array(w * h);
    for (let y = 0; y < h; y++) for (let x = 8; x < w; x++) alpha[y * w + x] = 255;
    for (const k of [2, 4]) {
      const up = await resizeAlpha(alpha, w, h, w * k, h * k);
      const row = up.subarray(k * w, 2 * k * w); // a row away from the top border
      const e = 8 * k;
      for (let d = 0; d < 3; d++)
        expect(Math.abs(row[e - 1 - d]! + row[e + d]! - 255), `±${d} px around the edge at ×${k}`).toBeLessThanOrEqual(1);
    }
    // sharp's resize (what this used before) is not symmetric about the edge: half an output pixel off.
    const theirs = await sharp(alpha, { raw: { width: w, height: h, channels: 1 } })
      .resize(w * 2, h * 2, { kernel: 'lanczos3' })
      .extractChannel(0)
      .raw()
      .toBuffer();
    const row = theirs.subarray(2 * w, 4 * w);
    expect(Math.abs(row[15]! + row[16]! - 255)).toBeGreaterThan(20);
  });

  it('leaves a same-size plane alone and still resamples a non-integer size', async () => {
    const a = new Uint8Array(10 * 10).fill(200);
    expect(await resizeAlpha(a, 10, 10, 10, 10)).toBe(a);
    const b = await resizeAlpha(a, 10, 10, 15, 15);
    expect(b.length).toBe(225);
    expect(new Set(b)).toEqual(new Set([200]));
  });
});
