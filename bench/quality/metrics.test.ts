import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { samplePhoto } from '../../test/support/images.js';
import { psnr, ssim, type Rgb } from './metrics.js';

const COMPARE = '/usr/bin/compare';
const dir = mkdtempSync(join(tmpdir(), 'quality-metrics-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const flat = (width: number, height: number, v: number): Rgb => ({ data: new Uint8Array(width * height * 3).fill(v), width, height });
const rgb = async (file: string): Promise<Rgb> => {
  const { data, info } = await sharp(file).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height };
};

describe('PSNR', () => {
  it('is infinite for identical pixels and 20·log10(255/d) for a constant difference d', () => {
    const a = flat(32, 24, 100);
    expect(psnr(a, a)).toBe(Number.POSITIVE_INFINITY);
    for (const d of [1, 5, 40]) expect(psnr(a, flat(32, 24, 100 + d))).toBeCloseTo(20 * Math.log10(255 / d), 10);
  });

  it('looks only inside the box', () => {
    const a = flat(40, 40, 50);
    const b = flat(40, 40, 50);
    // Change a 10×10 square at (20, 20): a box elsewhere sees no difference; a box on it sees all of it.
    for (let y = 20; y < 30; y++) for (let x = 20; x < 30; x++) b.data.fill(60, (y * 40 + x) * 3, (y * 40 + x) * 3 + 3);
    expect(psnr(a, b, { left: 0, top: 0, width: 20, height: 20 })).toBe(Number.POSITIVE_INFINITY);
    expect(psnr(a, b, { left: 20, top: 20, width: 10, height: 10 })).toBeCloseTo(20 * Math.log10(255 / 10), 10);
    expect(psnr(a, b)).toBeCloseTo(10 * Math.log10((255 * 255) / ((100 * 100) / 1600)), 10);
  });

  it('refuses images of different sizes', () => {
    expect(() => psnr(flat(10, 10, 0), flat(10, 11, 0))).toThrow(/differ in size/);
  });

  it.skipIf(!existsSync(COMPARE))('agrees with ImageMagick compare -metric PSNR on a real photo', async () => {
    const truth = join(dir, 'truth.png');
    const worse = join(dir, 'worse.png');
    await sharp(samplePhoto(2)).resize({ width: 480 }).png().toFile(truth);
    const m = await sharp(truth).metadata();
    const half = await sharp(truth)
      .resize(m.width! / 2, Math.round(m.height! / 2))
      .png()
      .toBuffer();
    await sharp(half).resize(m.width!, m.height!, { kernel: 'cubic' }).png().toFile(worse);
    // compare writes the metric to stderr (and exits 1 when the images differ).
    const run = spawnSync(COMPARE, ['-metric', 'PSNR', truth, worse, 'null:'], { encoding: 'utf8' });
    const theirs = Number.parseFloat(run.stderr);
    expect(theirs, 'compare output').toBeGreaterThan(20);
    expect(psnr(await rgb(truth), await rgb(worse))).toBeCloseTo(theirs, 2);
  });
});

describe('SSIM', () => {
  it('is 1 for identical images and (2ab + C1)/(a² + b² + C1) for two flat images', () => {
    const a = flat(30, 30, 100);
    expect(ssim(a, a)).toBeCloseTo(1, 10);
    const C1 = (0.01 * 255) ** 2;
    expect(ssim(a, flat(30, 30, 110))).toBeCloseTo((2 * 100 * 110 + C1) / (100 ** 2 + 110 ** 2 + C1), 6);
  });

  it('falls as a real photo is blurred more, and stays within (0, 1]', async () => {
    const truth = join(dir, 'truth-ssim.png');
    await sharp(samplePhoto(1)).extract({ left: 600, top: 200, width: 320, height: 240 }).png().toFile(truth);
    const t = await rgb(truth);
    let last = 1;
    for (const sigma of [0.6, 1.5, 4]) {
      const blurred = join(dir, `blur-${sigma}.png`);
      await sharp(truth).blur(sigma).png().toFile(blurred);
      const s = ssim(t, await rgb(blurred));
      expect(s).toBeLessThan(last);
      expect(s).toBeGreaterThan(0);
      last = s;
    }
  });

  it('averages the map over a box: a change outside the box leaves it at 1', () => {
    const a = flat(60, 60, 80);
    const b = flat(60, 60, 80);
    for (let y = 40; y < 60; y++) for (let x = 40; x < 60; x++) b.data.fill(200, (y * 60 + x) * 3, (y * 60 + x) * 3 + 3);
    expect(ssim(a, b, { left: 0, top: 0, width: 25, height: 25 })).toBeCloseTo(1, 10);
    expect(ssim(a, b, { left: 40, top: 40, width: 20, height: 20 })).toBeLessThan(0.9);
  });
});
