import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { ModelCache, planTiles, startRuntime, upscaleRgb } from '../src/index.js';
import { psnr, samplePhoto } from './helpers.js';

describe('planTiles', () => {
  it('covers every pixel exactly once, with padding clamped to the image', () => {
    const tiles = planTiles(130, 70, 64, 8);
    expect(tiles).toHaveLength(3 * 2);
    const seen = new Uint8Array(130 * 70);
    for (const t of tiles) {
      expect(t.px).toBe(Math.max(0, t.x - 8));
      expect(t.px + t.pw).toBe(Math.min(130, t.x + t.w + 8));
      for (let y = t.y; y < t.y + t.h; y++) for (let x = t.x; x < t.x + t.w; x++) seen[y * 130 + x]!++;
    }
    expect(seen.every((v) => v === 1)).toBe(true);
    expect(tiles.at(-1)).toMatchObject({ x: 128, y: 64, w: 2, h: 6, px: 120, py: 56, pw: 10, ph: 14 });
  });
});

describe('tiled upscaling (in process, WASM)', () => {
  it('stitches tiles without seams: 32 px tiles with 8 px context match one untiled pass (> 60 dB)', async () => {
    const rt = await startRuntime();
    expect(rt.tf.getBackend()).toBe('wasm');
    const models = new ModelCache(rt.tf, 'slim');
    const { data, info } = await sharp(samplePhoto(1))
      .extract({ left: 860, top: 300, width: 96, height: 80 })
      .raw()
      .toBuffer({ resolveWithObject: true });
    const img = { data: new Uint8Array(data), width: info.width, height: info.height };
    const whole = await upscaleRgb(rt.tf, models, img, 2, { tile: 256, pad: 0 });
    const ticks: number[] = [];
    const tiled = await upscaleRgb(rt.tf, models, img, 2, { tile: 32, pad: 8 }, { onTile: (d) => ticks.push(d) });
    expect(ticks).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect([tiled.width, tiled.height]).toEqual([192, 160]);
    expect(psnr(tiled.data, whole.data)).toBeGreaterThan(60);
    const noContext = await upscaleRgb(rt.tf, models, img, 2, { tile: 32, pad: 0 });
    expect(psnr(noContext.data, whole.data)).toBeLessThan(psnr(tiled.data, whole.data));
    const before = rt.tf.memory().numTensors;
    await upscaleRgb(rt.tf, models, img, 2, { tile: 32, pad: 8 });
    expect(rt.tf.memory().numTensors).toBe(before);
    await models.dispose();
  });
});
