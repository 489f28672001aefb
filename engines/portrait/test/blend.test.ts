import { describe, expect, it } from 'vitest';
import { faceRegion, featherMask, matchColour, overlay } from '../src/index.js';

describe('faceRegion', () => {
  it('grows the detector box by the margin and clamps it to the image', () => {
    expect(faceRegion({ x: 100, y: 100, width: 100, height: 100, score: 1 }, 1000, 1000)).toEqual({
      left: 70,
      top: 70,
      width: 160,
      height: 160,
    });
    expect(faceRegion({ x: 5, y: 950, width: 100, height: 100, score: 1 }, 1000, 1000)).toEqual({
      left: 0,
      top: 920,
      width: 135,
      height: 80,
    });
    expect(faceRegion({ x: 10, y: 10, width: 8, height: 8, score: 1 }, 100, 100)).toBeUndefined();
  });
});

describe('featherMask', () => {
  it('is ~0 at the edges, 1 inside, and rises monotonically across the feather', () => {
    const w = 40;
    const m = featherMask(w, 30, 10);
    const row = Array.from(m.subarray(15 * w, 16 * w));
    expect(row[0]).toBeLessThan(0.01);
    expect(row[w - 1]).toBeLessThan(0.01);
    expect(row[20]).toBe(1);
    for (let x = 1; x < 10; x++) expect(row[x]!).toBeGreaterThan(row[x - 1]!);
    // The largest step between neighbours is small: no edge to see.
    const steps = row.slice(1).map((v, i) => Math.abs(v - row[i]!));
    expect(Math.max(...steps)).toBeLessThan(0.2);
  });

  it('does not feather edges that lie on the image border', () => {
    const m = featherMask(20, 20, 5, { left: true, top: true });
    expect(m[0]).toBe(1);
    expect(m[19]).toBeLessThan(0.05);
  });
});

describe('matchColour and overlay', () => {
  it('moves the patch mean to the reference mean, per channel', () => {
    const n = 64;
    const patch = new Uint8Array(n * 3).map((_, i) => 100 + (i % 7));
    const ref = new Uint8Array(n * 3).map((_, i) => 120 + (i % 7));
    matchColour(patch, ref);
    const mean = (a: Uint8Array, c: number) => a.filter((_, i) => i % 3 === c).reduce((s, v) => s + v, 0) / n;
    for (let c = 0; c < 3; c++) expect(Math.abs(mean(patch, c) - mean(ref, c))).toBeLessThan(1);
  });

  it('builds RGBA with alpha = mask × weight (× the image alpha)', () => {
    const o = overlay(new Uint8Array([10, 20, 30, 40, 50, 60]), new Float32Array([1, 0.5]), 0.5, new Uint8Array([255, 0]));
    expect([...o]).toEqual([10, 20, 30, 128, 40, 50, 60, 0]);
  });
});
