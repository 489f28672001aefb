import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_OPTIONS, type JobOptions, type OutputFormat } from '@photoenhance/contracts';
import type { EngineUnderTest } from '@photoenhance/engine-protocol/testing';
import { ESRGAN_CAPABILITIES, modelPackageDir } from '../src/index.js';
import { psnr, rgbOf, samplePhoto, startEsrgan } from './helpers.js';

/**
 * The real esrgan engine process on the real models. The model package ships its own reference results
 * (assets/fixture.png and assets/samples/{2x,4x}/result.png): ours must match them far better than bicubic does.
 * ESRGAN_TILE=48 cuts the 128 px fixture into 9 tiles, so tiling and stitching are part of what is compared.
 */
let dir: string;
let engine: EngineUnderTest;
let seq = 0;
const slim = modelPackageDir('slim');
const fixture = join(slim, 'assets/fixture.png');

function job(input: string, o: Partial<JobOptions> & { format: OutputFormat }) {
  const id = `e-${++seq}`;
  return { id, input, output: join(dir, `${id}.${o.format === 'jpeg' ? 'jpg' : o.format}`), options: { ...DEFAULT_OPTIONS, ...o } };
}

async function runOk(input: string, o: Partial<JobOptions> & { format: OutputFormat }) {
  const j = job(input, o);
  const { result, progress } = await engine.run(j, 120_000);
  if (result.type !== 'done') throw new Error(`expected done, got ${JSON.stringify(result)}`);
  const meta = await sharp(j.output).metadata();
  expect(result.output).toEqual({ width: meta.width, height: meta.height, format: o.format, bytes: statSync(j.output).size });
  return { result, progress, meta, output: j.output };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'esrgan-engine-'));
  await sharp(samplePhoto(2)).resize({ width: 200 }).jpeg({ quality: 90 }).toFile(join(dir, 'photo.jpg'));
  await sharp(samplePhoto(2))
    .resize({ width: 96 })
    .extend({ top: 8, bottom: 8, left: 8, right: 8, background: { r: 0, g: 0, b: 0, alpha: 0 } })
    .png()
    .toFile(join(dir, 'alpha.png'));
  await sharp(samplePhoto(3)).resize({ width: 640 }).jpeg().toFile(join(dir, 'big.jpg'));
  engine = startEsrgan({ ESRGAN_TILE: '48', ESRGAN_TILE_PAD: '8' });
  const ready = await engine.ready(60_000);
  expect(ready).toMatchObject({
    engine: 'esrgan',
    protocol: 1,
    capabilities: ESRGAN_CAPABILITIES,
    info: { backend: 'wasm', model: '@upscalerjs/esrgan-slim', tile: 48 },
  });
});

afterAll(async () => {
  if (engine) {
    expect(engine.badLines, 'stdout must carry protocol messages only').toEqual([]);
    expect(await engine.stop()).toEqual({ code: 0, signal: null });
  }
  rmSync(dir, { recursive: true, force: true });
});

describe('esrgan engine (real process, real models)', () => {
  it.each([
    [1, 1, 4],
    [4, 4, 4],
    [4, 128, 2],
    [128, 4, 4],
  ] as const)(
    'handles a %i×%i image at scale %i (the smallest and most extreme sizes the gateway accepts: 4 px, 32:1)',
    async (w, h, scale) => {
      const input = join(dir, `size-${w}x${h}.png`);
      await sharp({ create: { width: w, height: h, channels: 3, background: '#7a5c3e' } })
        .png()
        .toFile(input);
      const { meta } = await runOk(input, { scale, format: 'png' });
      expect([meta.width, meta.height]).toEqual([w * scale, h * scale]);
    },
  );

  it.each([2, 4] as const)('x%d matches the model package reference result far better than bicubic', async (scale) => {
    const { output, meta, result, progress } = await runOk(fixture, { scale, format: 'png' });
    expect([meta.width, meta.height]).toEqual([128 * scale, 128 * scale]);
    const reference = await rgbOf(join(slim, `assets/samples/${scale}x/result.png`));
    const ours = psnr(await rgbOf(output), reference);
    const bicubic = psnr(await rgbOf(fixture, { width: 128 * scale, height: 128 * scale, kernel: 'cubic' }), reference);
    expect(ours).toBeGreaterThan(50); // measured 81–84 dB with 9 tiles (101 dB untiled); bicubic 30.8–32.4 dB
    expect(ours - bicubic).toBeGreaterThan(8);
    expect(result.meta).toMatchObject({ tiles: 9 });
    expect(progress.map((p) => p.stage)).toContain('upscale');
  });

  it('writes JPEG and WebP of a real photo at scale 2, and scale 1 keeps the size', async () => {
    const input = join(dir, 'photo.jpg');
    const { width, height } = await sharp(input).metadata();
    const jpg = await runOk(input, { scale: 2, format: 'jpeg', quality: 85, weight: 0.9 });
    expect([jpg.meta.width, jpg.meta.height, jpg.meta.format]).toEqual([width! * 2, height! * 2, 'jpeg']);
    expect(jpg.result.applied).toEqual({ scale: 2, format: 'jpeg', quality: 85 });
    const same = await runOk(input, { scale: 1, format: 'webp' });
    expect([same.meta.width, same.meta.height, same.meta.format]).toEqual([width, height, 'webp']);
  });

  it('keeps transparency in PNG (alpha scaled apart) and flattens it on white in JPEG', async () => {
    const png = await runOk(join(dir, 'alpha.png'), { scale: 2, format: 'png' });
    expect(png.meta.hasAlpha).toBe(true);
    const corner = await sharp(png.output).extract({ left: 0, top: 0, width: 4, height: 4 }).raw().toBuffer();
    expect(corner[3]).toBe(0);
    const jpg = await runOk(join(dir, 'alpha.png'), { scale: 2, format: 'jpeg' });
    const c2 = await sharp(jpg.output).extract({ left: 0, top: 0, width: 4, height: 4 }).raw().toBuffer();
    expect(Math.min(...c2)).toBeGreaterThan(240);
  });

  it('fails unreadable input with IMAGE_UNREADABLE and a missing one with INPUT_MISSING, leaving no output', async () => {
    const bad = job(join(dir, 'photo.jpg.nope'), { scale: 2, format: 'png' });
    expect((await engine.run(bad)).result).toMatchObject({ type: 'error', code: 'INPUT_MISSING', retryable: false });
    const truncated = join(dir, 'truncated.jpg');
    const whole = readFileSync(join(dir, 'photo.jpg'));
    writeFileSync(truncated, whole.subarray(0, Math.floor(whole.length / 2)));
    const j = job(truncated, { scale: 2, format: 'png' });
    expect((await engine.run(j)).result).toMatchObject({ type: 'error', code: 'IMAGE_UNREADABLE', retryable: false });
    expect(existsSync(j.output)).toBe(false);
  });

  it('cancels between tiles and takes the next job', async () => {
    const j = job(join(dir, 'big.jpg'), { scale: 4, format: 'png' });
    engine.send({ type: 'job', ...j });
    await engine.take('progress', { id: j.id, where: (p) => p.stage === 'upscale' });
    engine.send({ type: 'cancel', id: j.id });
    const { result } = await engine.outcome(j.id, 30_000);
    expect(result).toEqual({ type: 'canceled', id: j.id });
    expect(existsSync(j.output)).toBe(false);
    await runOk(join(dir, 'photo.jpg'), { scale: 2, format: 'png' });
  });
});

describe('esrgan start-up', () => {
  it('fails loudly, without ready, when the WASM backend cannot start (no silent CPU fallback)', async () => {
    const broken = startEsrgan({ ESRGAN_WASM_PATH: join(dir, 'no-wasm-here') });
    const err = await broken.take('error', { timeoutMs: 60_000 });
    expect(err).toMatchObject({ code: 'ENGINE_START_FAILED' });
    expect(err.id).toBeUndefined();
    expect(err.message).toMatch(/WASM backend did not start/);
    const exit = await broken.waitExit(10_000);
    expect(exit.code).not.toBe(0);
    expect(broken.messages.some((m) => m.type === 'ready')).toBe(false);
  });

  it('refuses a bad setting by name', async () => {
    const broken = startEsrgan({ ESRGAN_MODEL: 'huge' });
    const err = await broken.take('error', { timeoutMs: 60_000 });
    expect(err.message).toMatch(/ESRGAN_MODEL must be one of slim, medium/);
    expect((await broken.waitExit(10_000)).code).not.toBe(0);
  });
});
