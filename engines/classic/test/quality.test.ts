import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_OPTIONS, type JobOptions } from '@photoenhance/contracts';
import type { EngineUnderTest } from '@photoenhance/engine-protocol/testing';
import { addNoise, samplePhoto, startClassic } from './helpers.js';

/**
 * What the classic engine does to a real photo, scored against ground truth: a crop of a face-api sample is the
 * truth, its exact 2×2 box-filter shrink the input, and the engine brings it back ×2 (docs/quality.md has the whole
 * benchmark). ImageMagick's Lanczos is the bar.
 */
const IMAGEMAGICK = '/usr/bin/convert'; // the real one (a stand-in may sit earlier on PATH)
const haveIm = existsSync(IMAGEMAGICK);

interface Img {
  data: Uint8Array;
  width: number;
  height: number;
}
let dir: string;
let engine: EngineUnderTest;
let truth: Img;
let seq = 0;

const rgb = async (file: string | Buffer): Promise<Img> => {
  const { data, info } = await sharp(file).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height };
};
const png = (img: Img, file: string) =>
  sharp(Buffer.from(img.data), { raw: { width: img.width, height: img.height, channels: 3 } })
    .png()
    .toFile(file);
function psnr(a: Img, b: Img): number {
  expect([a.width, a.height]).toEqual([b.width, b.height]);
  let se = 0;
  for (let i = 0; i < a.data.length; i++) se += (a.data[i]! - b.data[i]!) ** 2;
  return 10 * Math.log10((255 * 255) / (se / a.data.length));
}
function boxHalf(img: Img): Img {
  const w = img.width / 2,
    h = img.height / 2;
  const out = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++)
      for (let c = 0; c < 3; c++) {
        const at = (yy: number, xx: number) => img.data[(yy * img.width + xx) * 3 + c]!;
        out[(y * w + x) * 3 + c] = Math.round(
          (at(2 * y, 2 * x) + at(2 * y, 2 * x + 1) + at(2 * y + 1, 2 * x) + at(2 * y + 1, 2 * x + 1)) / 4,
        );
      }
  return { data: out, width: w, height: h };
}

async function enhance(input: string, o: Partial<JobOptions> = {}) {
  const id = `q${++seq}`;
  const output = join(dir, `${id}.png`);
  const { result } = await engine.run({ id, input, output, options: { ...DEFAULT_OPTIONS, scale: 2, format: 'png', ...o } }, 120_000);
  if (result.type !== 'done') throw new Error(JSON.stringify(result));
  return { result, img: await rgb(output) };
}

const OFF = { denoise: false, tone: false, sharpen: false } as const;
let clean: string;
let imLanczos: number;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'classic-quality-'));
  truth = await rgb(await sharp(samplePhoto(1)).extract({ left: 280, top: 240, width: 640, height: 480 }).png().toBuffer());
  clean = join(dir, 'half.png');
  await png(boxHalf(truth), clean);
  if (haveIm) {
    const r = spawnSync(IMAGEMAGICK, [clean, '-filter', 'Lanczos', '-resize', '200%', join(dir, 'im.png')], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(r.stderr);
    imLanczos = psnr(await rgb(join(dir, 'im.png')), truth);
  }
  engine = startClassic();
  await engine.ready(60_000);
});

afterAll(async () => {
  if (engine) expect(await engine.stop()).toEqual({ code: 0, signal: null });
  rmSync(dir, { recursive: true, force: true });
});

describe('classic engine output quality (real photo, ground truth)', () => {
  it.skipIf(!haveIm)('with every step off, its plain upscale matches or beats ImageMagick Lanczos', async () => {
    const { result, img } = await enhance(clean, OFF);
    expect(result.applied).toEqual({ scale: 2, format: 'png', denoise: false, tone: false, sharpen: false });
    expect(psnr(img, truth)).toBeGreaterThanOrEqual(imLanczos - 0.05);
  });

  it.skipIf(!haveIm)(
    "by default it scores at least ImageMagick Lanczos − 0.5 dB, leaving a clean, well-exposed photo's noise and tones alone",
    async () => {
      const { result, img } = await enhance(clean);
      expect(result.applied).toEqual({ scale: 2, format: 'png', denoise: false, tone: false, sharpen: true });
      expect(psnr(img, truth)).toBeGreaterThanOrEqual(imLanczos - 0.5);
    },
  );

  it('measures noise and denoises a noisy photo (closer to the clean truth than without), and not when told not to', async () => {
    const noisy = join(dir, 'noisy.png');
    await png(addNoise(boxHalf(truth), 8), noisy);
    const on = await enhance(noisy);
    expect(on.result.applied).toMatchObject({ denoise: true });
    // σ 8 per channel is ~5.3 in luma.
    expect(on.result.meta?.noise).toBeGreaterThan(4);
    expect(on.result.meta?.noise).toBeLessThan(7);
    const off = await enhance(noisy, { denoise: false });
    expect(off.result.applied).toMatchObject({ denoise: false });
    expect(psnr(on.img, truth)).toBeGreaterThan(psnr(off.img, truth) + 1);
  });

  it("corrects a washed-out photo's tones (unless tone is off)", async () => {
    const washed = join(dir, 'washed.png');
    const half = boxHalf(truth);
    await png({ ...half, data: half.data.map((v) => 70 + v * 0.55) }, washed);
    const on = await enhance(washed, { sharpen: false });
    expect(on.result.applied).toMatchObject({ tone: true });
    expect(on.result.meta?.levels).toMatchObject({ low: expect.any(Number), gain: expect.any(Number) });
    const off = await enhance(washed, { tone: false, sharpen: false });
    expect(off.result.applied).toMatchObject({ tone: false });
    // Closer to the original's tones than the washed-out input.
    expect(psnr(on.img, truth)).toBeGreaterThan(psnr(off.img, truth) + 3);
  });
});
