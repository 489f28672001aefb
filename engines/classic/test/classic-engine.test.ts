import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_OPTIONS, type JobOptions, type OutputFormat } from '@photoenhance/contracts';
import type { EngineUnderTest } from '@photoenhance/engine-protocol/testing';
import { CLASSIC_CAPABILITIES, encodeBmp24 } from '../src/index.js';
import { samplePhoto, startClassic } from './helpers.js';

let dir: string;
let engine: EngineUnderTest;
let seq = 0;
/** Size of the generated inputs (a real photo scaled to 640 px wide). */
let small: { width: number; height: number };

const opts = (o: Partial<JobOptions> & { format: OutputFormat }): JobOptions => ({ ...DEFAULT_OPTIONS, ...o });
const ext = (f: OutputFormat): string => (f === 'jpeg' ? 'jpg' : f);

function job(input: string, o: Partial<JobOptions> & { format: OutputFormat }) {
  const id = `job-${++seq}`;
  return { id, input, output: join(dir, `${id}.${ext(o.format)}`), options: opts(o) };
}

async function runOk(input: string, o: Partial<JobOptions> & { format: OutputFormat }) {
  const j = job(input, o);
  const { result, progress } = await engine.run(j, 120_000);
  if (result.type !== 'done') throw new Error(`expected done, got ${JSON.stringify(result)}`);
  const meta = await sharp(j.output).metadata();
  expect(result.output).toEqual({ width: meta.width, height: meta.height, format: o.format, bytes: statSync(j.output).size });
  expect(meta.format).toBe(o.format);
  return { result, progress, meta, output: j.output };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'classic-engine-'));
  // Inputs in every accepted type, made from a real photo (640 px wide keeps the suite quick).
  const base = sharp(samplePhoto(2)).resize({ width: 640 });
  const info = await base.clone().png().toFile(join(dir, 'photo.png'));
  small = { width: info.width, height: info.height };
  await base.clone().webp({ quality: 90 }).toFile(join(dir, 'photo.webp'));
  await base.clone().tiff().toFile(join(dir, 'photo.tiff'));
  await base.clone().toColourspace('rgb16').png().toFile(join(dir, 'photo16.png'));
  const raw = await base.clone().raw().toBuffer({ resolveWithObject: true });
  writeFileSync(join(dir, 'photo.bmp'), encodeBmp24({ data: raw.data, ...raw.info }));
  // Transparent border around the photo.
  await base
    .clone()
    .extend({ top: 40, bottom: 40, left: 40, right: 40, background: { r: 0, g: 0, b: 0, alpha: 0 } })
    .png()
    .toFile(join(dir, 'alpha.png'));
  // Flat colour at half opacity: colours must survive alpha handling (premultiplication) unchanged.
  await sharp({ create: { width: 300, height: 300, channels: 4, background: { r: 200, g: 100, b: 50, alpha: 0.5 } } })
    .png()
    .toFile(join(dir, 'semi.png'));
  // EXIF orientation 6: stored landscape, shown portrait.
  await base.clone().jpeg().withMetadata({ orientation: 6 }).toFile(join(dir, 'rotated.jpg'));
  const jpeg = readFileSync(samplePhoto(3));
  writeFileSync(join(dir, 'truncated.jpg'), jpeg.subarray(0, Math.floor(jpeg.length / 2)));
  writeFileSync(join(dir, 'not-an-image.jpg'), 'hello, I am text pretending to be a JPEG\n');

  engine = startClassic();
  const ready = await engine.ready(60_000);
  expect(ready).toMatchObject({
    engine: 'classic',
    protocol: 1,
    capabilities: CLASSIC_CAPABILITIES,
    info: { device: 'cpu', cache: false },
  });
});

afterAll(async () => {
  if (engine) {
    expect(engine.badLines, 'stdout must carry protocol messages only').toEqual([]);
    expect(await engine.stop()).toEqual({ code: 0, signal: null });
  }
  rmSync(dir, { recursive: true, force: true });
});

describe('classic engine (real process, real photos)', () => {
  it('enhances a 1920 px photo at scale 2 to JPEG, with staged progress and exactly the applied options', async () => {
    const { result, progress, meta } = await runOk(samplePhoto(1), { scale: 2, format: 'jpeg', quality: 90, version: '1.3', weight: 0.9 });
    expect([meta.width, meta.height]).toEqual([3840, 2560]);
    // A clean, well-exposed photo: no denoise, no tone change, detail sharpened.
    expect(result.applied).toEqual({ scale: 2, format: 'jpeg', quality: 90, denoise: false, tone: false, sharpen: true });
    expect(progress.map((p) => p.stage)).toEqual(['decode', 'denoise', 'tone', 'sharpen', 'upscale']);
    const values = progress.map((p) => p.progress);
    expect(values).toEqual([...values].sort((a, b) => a - b));
    expect(result.timings).toMatchObject({
      totalMs: expect.any(Number),
      decodeMs: expect.any(Number),
      denoiseMs: expect.any(Number),
      toneMs: expect.any(Number),
      sharpenMs: expect.any(Number),
      upscaleMs: expect.any(Number),
    });
  });

  it.each([
    ['photo.png', 'webp', 2],
    ['photo.webp', 'png', 1],
    ['photo.tiff', 'png', 2],
    ['photo.bmp', 'jpeg', 2],
    ['photo16.png', 'png', 1],
  ] as const)('reads %s and writes %s at scale %d', async (name, format, scale) => {
    const { meta } = await runOk(join(dir, name), { scale, format });
    expect([meta.width, meta.height]).toEqual([small.width * scale, small.height * scale]);
    expect(meta.channels).toBe(3);
    expect(meta.depth).toBe('uchar');
  });

  it('keeps transparency in PNG and puts it on white in JPEG', async () => {
    const png = await runOk(join(dir, 'alpha.png'), { scale: 2, format: 'png' });
    expect(png.meta.hasAlpha).toBe(true);
    const corner = await sharp(png.output).extract({ left: 0, top: 0, width: 8, height: 8 }).raw().toBuffer();
    expect(corner[3]).toBe(0);
    const semi = await runOk(join(dir, 'semi.png'), { scale: 2, format: 'webp', quality: 100 });
    const centre = await sharp(semi.output).extract({ left: 300, top: 300, width: 1, height: 1 }).raw().toBuffer();
    expect([...centre].map((v, i) => Math.abs(v - [200, 100, 50, 128][i]!) <= 6)).toEqual([true, true, true, true]);
    const jpg = await runOk(join(dir, 'alpha.png'), { scale: 1, format: 'jpeg' });
    expect(jpg.meta.hasAlpha).toBe(false);
    const corner2 = await sharp(jpg.output).extract({ left: 0, top: 0, width: 8, height: 8 }).raw().toBuffer();
    expect(Math.min(...corner2)).toBeGreaterThan(245);
  });

  it('applies EXIF orientation', async () => {
    const { meta } = await runOk(join(dir, 'rotated.jpg'), { scale: 1, format: 'png' });
    expect([meta.width, meta.height]).toEqual([small.height, small.width]);
  });

  it('reports quality only where it applies, and a lower JPEG/WebP quality gives a smaller file', async () => {
    const input = join(dir, 'photo.png');
    const lo = await runOk(input, { scale: 1, format: 'jpeg', quality: 30 });
    const hi = await runOk(input, { scale: 1, format: 'jpeg', quality: 95 });
    expect(lo.result.output.bytes * 1.5).toBeLessThan(hi.result.output.bytes);
    const wlo = await runOk(input, { scale: 1, format: 'webp', quality: 30 });
    const whi = await runOk(input, { scale: 1, format: 'webp', quality: 95 });
    expect(wlo.result.output.bytes).toBeLessThan(whi.result.output.bytes);
    expect(whi.result.applied).toMatchObject({ scale: 1, format: 'webp', quality: 95 });
    const png = await runOk(input, { scale: 1, format: 'png', quality: 10 });
    expect(png.result.applied).not.toHaveProperty('quality');
    expect(png.result.applied).toMatchObject({ scale: 1, format: 'png' });
  });

  it.each([
    [1, 1, 4],
    [2, 3, 4],
    [8, 8, 4],
    [8, 256, 4],
    [256, 8, 4],
    [20_000, 1, 1],
    [1, 20_000, 2],
  ])(
    'handles a %i×%i image at scale %i (the smallest and most extreme sizes; the gateway accepts from 4 px and 32:1)',
    async (w, h, scale) => {
      const input = join(dir, `size-${w}x${h}.png`);
      await sharp({ create: { width: w, height: h, channels: 3, background: '#7a5c3e' } })
        .png()
        .toFile(input);
      for (const format of ['png', 'jpeg'] as const) {
        const { meta } = await runOk(input, { scale: scale as 1 | 2 | 4, format });
        expect([meta.width, meta.height]).toEqual([w * scale, h * scale]);
      }
    },
  );

  it('fails a truncated JPEG and a non-image with IMAGE_UNREADABLE (not retryable), a missing input with INPUT_MISSING', async () => {
    for (const name of ['truncated.jpg', 'not-an-image.jpg']) {
      const j = job(join(dir, name), { scale: 2, format: 'jpeg' });
      const { result } = await engine.run(j);
      expect(result).toMatchObject({ type: 'error', id: j.id, code: 'IMAGE_UNREADABLE', retryable: false });
      expect(existsSync(j.output)).toBe(false);
    }
    const missing = await engine.run(job(join(dir, 'gone.jpg'), { scale: 2, format: 'png' }));
    expect(missing.result).toMatchObject({ type: 'error', code: 'INPUT_MISSING', retryable: false });
  });

  it('reports several progress stages for a large job (1920 px at scale 4 -> 7680 px)', async () => {
    const { meta, progress } = await runOk(samplePhoto(4), { scale: 4, format: 'jpeg', quality: 80 });
    expect(meta.width).toBe(4 * 1920);
    expect(progress.map((p) => p.stage)).toEqual(['decode', 'denoise', 'tone', 'sharpen', 'upscale']);
  });

  it('cancels a running job: replies canceled, leaves no output, and takes the next job', async () => {
    const j = job(samplePhoto(5), { scale: 4, format: 'png' });
    engine.send({ type: 'job', ...j });
    await engine.take('progress', { id: j.id });
    engine.send({ type: 'cancel', id: j.id });
    const { result, progress } = await engine.outcome(j.id, 120_000);
    expect(result).toEqual({ type: 'canceled', id: j.id });
    expect(progress.length).toBeLessThan(3);
    expect(existsSync(j.output)).toBe(false);
    await runOk(join(dir, 'photo.webp'), { scale: 1, format: 'jpeg' });
  });
});
