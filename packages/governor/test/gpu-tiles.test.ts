import { describe, expect, it } from 'vitest';
import { bgUpsamplerGpuBytes, chooseBgTile } from '../src/index.js';

const GiB = 1024 ** 3;

describe('background tile from free GPU memory', () => {
  it('the model reproduces the measured H200 figures (BRIEF section 4) within 1.5 %', () => {
    const measured: Array<[number, number, number, number]> = [
      [1280, 960, 0, 2.5],
      [2000, 1500, 0, 6.2],
      [4000, 3000, 0, 24.5],
      [1280, 960, 400, 0.42],
      [2000, 1500, 400, 0.47],
      [4000, 3000, 400, 0.72],
    ];
    for (const [w, h, tile, gib] of measured) {
      const got = bgUpsamplerGpuBytes(w, h, tile) / GiB;
      expect(Math.abs(got - gib) / gib, `${w}x${h} tile ${tile}: model ${got.toFixed(3)} GiB vs measured ${gib}`).toBeLessThan(0.015);
    }
  });

  it('picks no tiling when the whole photo fits, else the largest even tile that fits with headroom', () => {
    // 80 GiB free: a 12 MP photo fits untiled (24.5 GiB)
    expect(chooseBgTile(80 * GiB, 4000, 3000)).toMatchObject({ tile: 0 });
    // a 16 GB card with 12 GiB free: 12 MP does not fit untiled; the largest tile does
    const mid = chooseBgTile(12 * GiB, 4000, 3000)!;
    expect(mid.tile).toBe(1024);
    // 1 GiB free (0.8 GiB budget): 0.72 GiB at 400 px fits, and a bit more
    const low = chooseBgTile(1 * GiB, 4000, 3000)!;
    expect(low.tile % 2).toBe(0);
    expect(low.tile).toBeGreaterThanOrEqual(400);
    expect(low.expectedBytes).toBeLessThanOrEqual(low.budgetBytes);
    expect(bgUpsamplerGpuBytes(4000, 3000, low.tile + 2)).toBeGreaterThan(low.budgetBytes);
    // the whole image alone (0.34 GiB in + out) does not fit in 0.3 GiB: no tile helps
    expect(chooseBgTile(0.3 * GiB, 4000, 3000)).toBeUndefined();
    // fp32 needs twice as much
    expect(chooseBgTile(20 * GiB, 2000, 1500, { half: false })!.tile).toBe(0);
    expect(chooseBgTile(20 * GiB, 2000, 1500, { half: false, headroom: 0.5 })!.tile).toBeGreaterThan(0);
  });
});
