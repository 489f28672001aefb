import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_OPTIONS } from '@photoenhance/contracts';
import { EngineUnderTest, tsEngineArgv } from '@photoenhance/engine-protocol/testing';

/**
 * Against ground truth: a crop of a real group photo (two faces) is the truth, its exact 2×2 box shrink the input;
 * portrait and esrgan (the real engine processes) bring it back ×2. On the face regions portrait must score better
 * than esrgan alone (docs/quality.md has the whole benchmark).
 */
const root = fileURLToPath(new URL('../../../', import.meta.url));
const sample = (n: number): string => join(root, `node_modules/@vladmandic/face-api/demo/sample${n}.jpg`);
let dir: string;
let portrait: EngineUnderTest;
let esrgan: EngineUnderTest;
let truth: { data: Buffer; width: number; height: number };
const input = (): string => join(dir, 'half.png');

async function run(engine: EngineUnderTest, id: string) {
  const output = join(dir, `${id}.png`);
  const { result } = await engine.run({ id, input: input(), output, options: { ...DEFAULT_OPTIONS, scale: 2, format: 'png' } }, 300_000);
  if (result.type !== 'done') throw new Error(JSON.stringify(result));
  return { result, data: await sharp(output).removeAlpha().raw().toBuffer() };
}

function psnr(a: Buffer, b: Buffer, width: number, [l, t, w, h]: number[]): number {
  let se = 0;
  for (let y = t!; y < t! + h!; y++) for (let i = (y * width + l!) * 3; i < (y * width + l! + w!) * 3; i++) se += (a[i]! - b[i]!) ** 2;
  return 10 * Math.log10((255 * 255) / (se / (w! * h! * 3)));
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'portrait-quality-'));
  const { data, info } = await sharp(sample(1))
    .extract({ left: 330, top: 250, width: 820, height: 600 })
    .resize({ width: 480, height: 352, fit: 'fill' })
    .raw()
    .toBuffer({ resolveWithObject: true });
  truth = { data, width: info.width, height: info.height };
  const w = info.width / 2,
    h = info.height / 2;
  const half = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++)
      for (let c = 0; c < 3; c++) {
        const at = (yy: number, xx: number) => data[(yy * info.width + xx) * 3 + c]!;
        half[(y * w + x) * 3 + c] = Math.round(
          (at(2 * y, 2 * x) + at(2 * y, 2 * x + 1) + at(2 * y + 1, 2 * x) + at(2 * y + 1, 2 * x + 1)) / 4,
        );
      }
  await sharp(half, { raw: { width: w, height: h, channels: 3 } })
    .png()
    .toFile(input());
  portrait = new EngineUnderTest(tsEngineArgv(join(root, 'engines/portrait/src/main.ts')), { cwd: root });
  esrgan = new EngineUnderTest(tsEngineArgv(join(root, 'engines/esrgan/src/main.ts')), { cwd: root });
  await Promise.all([portrait.ready(90_000), esrgan.ready(90_000)]);
}, 120_000);

afterAll(async () => {
  await Promise.all([portrait?.stop(), esrgan?.stop()]);
  rmSync(dir, { recursive: true, force: true });
});

describe('portrait output quality (real photo, ground truth)', () => {
  it('scores better on the face regions than the same photo through esrgan alone', async () => {
    const p = await run(portrait, 'portrait');
    const e = await run(esrgan, 'esrgan');
    const regions = ((p.result.meta?.regions ?? []) as number[][]).map((r) => r.map((v) => v * 2));
    expect(regions.length).toBeGreaterThanOrEqual(1);
    for (const r of regions) {
      const ours = psnr(p.data, truth.data, truth.width, r);
      const theirs = psnr(e.data, truth.data, truth.width, r);
      expect(ours, `face region ${r.join(',')}: portrait ${ours.toFixed(2)} dB vs esrgan ${theirs.toFixed(2)} dB`).toBeGreaterThan(theirs);
    }
  }, 300_000);
});
