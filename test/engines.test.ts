import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobView } from '@photoenhance/contracts';
import { samplePhoto } from './support/images.js';
import { startTestRedis, type TestRedis } from './support/redis.js';
import {
  REPO,
  removeDir,
  startGateway,
  startWorker,
  submit,
  until,
  waitForStatus,
  type RunningGateway,
  type RunningWorker,
} from './support/stack.js';

/**
 * The neural built-in engines and a real one-shot command-line engine, end to end: real Redis, the real gateway over
 * HTTP, the real worker running `esrgan` and `portrait` (resident, tfjs WASM) and ImageMagick from the shipped
 * example profile (one process per job). Real photos in (face-api samples, downscaled for speed), decodable images
 * of the right size out. The classic engine is covered by test/api.test.ts.
 */
const IMAGEMAGICK = '/usr/bin/convert';
const haveImageMagick = existsSync(IMAGEMAGICK);
if (!haveImageMagick) {
  console.warn(
    `test/engines.test.ts: skipping the ImageMagick one-shot test: ${IMAGEMAGICK} is not installed (apt-get install -y imagemagick). /usr/local/bin/convert, if present, is not ImageMagick.`,
  );
}

let redis: TestRedis;
let gw: RunningGateway;
let worker: RunningWorker;
let cfgDir: string;

beforeAll(async () => {
  redis = await startTestRedis();
  gw = await startGateway(redis.url, { knownEngines: ['classic'] });
  cfgDir = mkdtempSync(join(tmpdir(), 'pe-engines-'));
  const example = JSON.parse(readFileSync(join(REPO, 'engines/examples/imagemagick.json'), 'utf8')) as {
    engines: Array<{ command: string[] }>;
  };
  const engines: unknown[] = [
    // 64 px tiles: several tiles even on these small photos, so stitching runs end to end too.
    { name: 'esrgan', env: { ESRGAN_TILE: '64' } },
    { name: 'portrait', env: { ESRGAN_TILE: '64' } },
    ...(haveImageMagick ? example.engines : []),
  ];
  const cfg = join(cfgDir, 'worker.json');
  writeFileSync(cfg, JSON.stringify({ engines, run: ['esrgan', 'portrait', ...(haveImageMagick ? ['imagemagick'] : [])] }));
  worker = await startWorker({ REDIS_URL: redis.url, STORAGE_DIR: gw.storageDir, WORKER_CONFIG: cfg });
  await worker.waitForLog((r) => r.msg === 'worker ready');
});

afterAll(async () => {
  await worker?.stop();
  await gw?.close();
  await redis?.close();
  if (cfgDir) removeDir(cfgDir);
});

async function enhance(photo: Buffer, fields: Record<string, string>, timeoutMs = 90_000) {
  const res = await submit(gw.url, photo, fields);
  expect(res.status, await res.clone().text()).toBe(202);
  const { id } = (await res.json()) as { id: string };
  const view = (await waitForStatus(gw.url, id, ['completed', 'failed'], timeoutMs)) as JobView;
  expect(view.status, JSON.stringify(view)).toBe('completed');
  const dl = await fetch(`${gw.url}/v1/jobs/${id}/result`);
  expect(dl.status).toBe(200);
  const meta = await sharp(Buffer.from(await dl.arrayBuffer())).metadata();
  return { view, meta };
}

describe('engines end to end', () => {
  it('GET /v1/engines lists the built-in neural engines and the one-shot engine with the host that runs them', async () => {
    const want = ['esrgan', 'portrait', ...(haveImageMagick ? ['imagemagick'] : [])];
    const list = await until(
      'engines announced by the worker',
      async () => {
        const body = (await (await fetch(`${gw.url}/v1/engines`)).json()) as {
          engines: Array<{ name: string; kind?: string; hosts: unknown[]; capabilities?: { options: string[] } }>;
        };
        return want.every((n) => body.engines.some((e) => e.name === n && e.hosts.length > 0)) ? body.engines : undefined;
      },
      60_000,
      200,
    );
    expect(list.find((e) => e.name === 'esrgan')).toMatchObject({ kind: 'resident' });
    expect(list.find((e) => e.name === 'portrait')).toMatchObject({ kind: 'resident' });
    if (haveImageMagick)
      expect(list.find((e) => e.name === 'imagemagick')).toMatchObject({
        kind: 'oneshot',
        capabilities: { options: ['scale', 'quality'] },
      });
  });

  it('esrgan: a real photo at scale 2 comes back twice the size', async () => {
    const photo = await sharp(samplePhoto(2)).resize({ width: 160 }).jpeg({ quality: 90 }).toBuffer();
    const { height } = await sharp(photo).metadata();
    const { view, meta } = await enhance(photo, { engine: 'esrgan', scale: '2', format: 'png' });
    expect(meta).toMatchObject({ format: 'png', width: 320, height: height! * 2 });
    expect(view).toMatchObject({
      engine: 'esrgan',
      result: { applied: { scale: 2, format: 'png' }, meta: { model: 'esrgan-slim x2', tiles: 6 } },
    }); // 160×109 in 64 px tiles
  });

  it('portrait: faces found in a real photo are restored, at scale 2', async () => {
    // A crop around two faces of sample1, 256 px wide.
    const photo = await sharp(samplePhoto(1))
      .extract({ left: 330, top: 250, width: 820, height: 600 })
      .resize({ width: 256 })
      .jpeg({ quality: 92 })
      .toBuffer();
    const { height } = await sharp(photo).metadata();
    const { view, meta } = await enhance(photo, { engine: 'portrait', scale: '2', format: 'jpeg', weight: '0.8' });
    expect(meta).toMatchObject({ format: 'jpeg', width: 512, height: height! * 2 });
    expect(view.result?.meta?.faces).toBeGreaterThanOrEqual(1);
    expect(view.result?.applied).toMatchObject({ scale: 2, format: 'jpeg', weight: 0.8, onlyCenterFace: false });
  });

  it.skipIf(!haveImageMagick)(
    'imagemagick one-shot (the shipped example profile): one process per job, the asked format and size out',
    async () => {
      const photo = await sharp(samplePhoto(3)).resize({ width: 200 }).jpeg().toBuffer();
      const { height } = await sharp(photo).metadata();
      const { view, meta } = await enhance(photo, { engine: 'imagemagick', scale: '2', format: 'webp', quality: '80' });
      expect(meta).toMatchObject({ format: 'webp', width: 400, height: height! * 2 });
      expect(view.result?.applied).toMatchObject({ scale: 2, quality: 80, format: 'webp' });
      const png = await enhance(photo, { engine: 'imagemagick', scale: '1', format: 'png' });
      expect(png.meta).toMatchObject({ format: 'png', width: 200 });
    },
  );

  it('after their first jobs, GET /v1/engines shows what the resident engines said they honour', async () => {
    const engines = await until(
      'capabilities in the heartbeat',
      async () => {
        const body = (await (await fetch(`${gw.url}/v1/engines`)).json()) as {
          engines: Array<{ name: string; capabilities?: { options: string[] } }>;
        };
        const by = (n: string) => body.engines.find((e) => e.name === n);
        return by('esrgan')?.capabilities && by('portrait')?.capabilities ? body.engines : undefined;
      },
      10_000,
      200,
    );
    expect(engines.find((e) => e.name === 'esrgan')?.capabilities?.options).toEqual(['scale', 'format', 'quality']);
    expect(engines.find((e) => e.name === 'portrait')?.capabilities?.options).toEqual(expect.arrayContaining(['weight', 'onlyCenterFace']));
  });
});
