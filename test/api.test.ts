import { request } from 'node:http';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keys } from '@photoenhance/queue';
import type { TestRedis } from './support/redis.js';
import { pngClaiming, samplePhoto, smallPhoto, truncatedJpeg } from './support/images.js';
import {
  fixtureEngine,
  startStack,
  submit,
  until,
  waitForStatus,
  type RunningGateway,
  type RunningWorker,
  type Stack,
} from './support/stack.js';

/**
 * The native HTTP API end to end: real Redis, the real gateway over real HTTP, the real worker app running the real
 * classic engine and fixture engines as child processes.
 */
let redis: TestRedis;
let gw: RunningGateway;
let worker: RunningWorker;

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({
    gateway: { maxUploadBytes: 2 * 1024 * 1024, knownEngines: ['classic', 'slow', 'crash', 'paced', 'nobody'], jobBackoffMs: 50 },
    engines: [
      { name: 'classic' },
      fixtureEngine('slow', 'resize', 30_000, { stopGraceMs: 2000 }),
      fixtureEngine('crash', 'crash'),
      fixtureEngine('paced', 'resize', 40),
    ],
  });
  ({ redis, gw, worker } = stack);
});

afterAll(() => stack?.close());

async function problem(res: Response): Promise<Record<string, unknown>> {
  expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  const body = (await res.json()) as Record<string, unknown>;
  expect(typeof body.detail).toBe('string');
  expect(body.status).toBe(res.status);
  return body;
}

async function expectGoodJobCompletes(): Promise<void> {
  const res = await submit(gw.url, await smallPhoto('jpeg', 200), { scale: '2' });
  expect(res.status).toBe(202);
  const { id } = (await res.json()) as { id: string };
  const done = await waitForStatus(gw.url, id, ['completed', 'failed']);
  expect(done.status).toBe('completed');
}

describe('POST /v1/jobs → poll → download', () => {
  it('enhances a real photo with the classic engine', async () => {
    const res = await submit(
      gw.url,
      await sharp(samplePhoto(2)).resize({ width: 640 }).jpeg().toBuffer(),
      { scale: '2' },
      'family photo.jpg',
    );
    expect(res.status).toBe(202);
    const accepted = (await res.json()) as { id: string; status: string; links: { self: string; result: string } };
    expect(accepted.status).toBe('queued');
    expect(res.headers.get('location')).toBe(accepted.links.self);
    const view = await waitForStatus(gw.url, accepted.id, ['completed', 'failed']);
    expect(view.status, JSON.stringify(view)).toBe('completed');
    expect(view).toMatchObject({
      engine: 'classic',
      progress: 1,
      input: { width: 640, format: 'jpeg' },
      result: { width: 1280, format: 'jpeg' },
    });
    expect((view.timings as { queuedMs: number }).queuedMs).toBeGreaterThanOrEqual(0);
    const dl = await fetch(`${gw.url}${accepted.links.result}`);
    expect(dl.status).toBe(200);
    expect(dl.headers.get('content-type')).toBe('image/jpeg');
    expect(dl.headers.get('content-disposition')).toContain('filename="family photo_enhanced.jpg"');
    const meta = await sharp(Buffer.from(await dl.arrayBuffer())).metadata();
    expect(meta).toMatchObject({ format: 'jpeg', width: 1280 });
  });

  it.each([
    ['png', 'png', 'image/png'],
    ['webp', 'webp', 'image/webp'],
    ['tiff', 'png', 'image/png'],
    ['bmp', 'png', 'image/png'],
  ] as const)('accepts %s input and writes %s with format=auto', async (inFmt, outFmt, type) => {
    const res = await submit(gw.url, await smallPhoto(inFmt, 120), { scale: '1' }, `x.${inFmt}`, 'application/octet-stream');
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    const view = await waitForStatus(gw.url, id, ['completed', 'failed']);
    expect(view.status, JSON.stringify(view)).toBe('completed');
    const dl = await fetch(`${gw.url}/v1/jobs/${id}/result`);
    expect(dl.headers.get('content-type')).toBe(type);
    expect((await sharp(Buffer.from(await dl.arrayBuffer())).metadata()).format).toBe(outFmt);
  });

  it('honours an explicit format and quality', async () => {
    const res = await submit(gw.url, await smallPhoto('jpeg', 160), { scale: '1', format: 'webp', quality: '40' });
    const { id } = (await res.json()) as { id: string };
    const view = await waitForStatus(gw.url, id, ['completed', 'failed']);
    expect(view).toMatchObject({ status: 'completed', options: { format: 'webp', quality: 40 }, result: { format: 'webp' } });
  });
});

describe('bad input gets a specific problem, and good jobs still complete', () => {
  it('no image part → 400 IMAGE_REQUIRED', async () => {
    const form = new FormData();
    form.append('scale', '2');
    const body = await problem(await fetch(`${gw.url}/v1/jobs`, { method: 'POST', body: form }));
    expect(body.code).toBe('IMAGE_REQUIRED');
  });

  it('bad option → 400 INVALID_OPTION naming the field, what is allowed and what arrived', async () => {
    const body = await problem(await submit(gw.url, await smallPhoto(), { scale: '3' }));
    expect(body).toMatchObject({ code: 'INVALID_OPTION', field: 'scale', received: '3' });
    expect(body.allowed).toContain('1, 2, 4');
    expect(body.detail).toContain('scale');
    for (const [field, value] of [
      ['weight', '1.5'],
      ['bgTile', '16'],
      ['format', 'gif'],
      ['quality', '0'],
      ['onlyCenterFace', 'maybe'],
      ['version', '2.0'],
      ['colour', 'red'],
    ]) {
      const b = await problem(await submit(gw.url, await smallPhoto('jpeg', 64), { [field!]: value! }));
      expect(b, field).toMatchObject({ code: 'INVALID_OPTION', field });
    }
  });

  it('upload over the limit → 413 IMAGE_TOO_LARGE (declared length, refused before reading)', async () => {
    const big = Buffer.concat([await smallPhoto(), Buffer.alloc(3 * 1024 * 1024, 1)]);
    const body = await problem(await submit(gw.url, big));
    expect(body.code).toBe('IMAGE_TOO_LARGE');
  });

  it('upload over the limit → 413 IMAGE_TOO_LARGE while streaming (chunked, no length)', async () => {
    const boundary = 'xxBOUNDARYxx';
    const head = Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\nContent-Type: image/jpeg\r\n\r\n`,
    );
    const jpeg = await smallPhoto();
    const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request(
        `${gw.url}/v1/jobs`,
        { method: 'POST', headers: { 'content-type': `multipart/form-data; boundary=${boundary}`, 'transfer-encoding': 'chunked' } },
        (res) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
        },
      );
      req.on('error', reject);
      req.write(head);
      req.write(jpeg);
      let sent = 0;
      // Keep sending until the server answers (it must not need the rest); stop at 8 MiB either way.
      const pump = (): void => {
        if (sent > 8 * 1024 * 1024 || req.destroyed) {
          req.end();
          return;
        }
        sent += 256 * 1024;
        if (req.write(Buffer.alloc(256 * 1024, 7))) setImmediate(pump);
        else req.once('drain', pump);
      };
      pump();
    });
    expect(status).toBe(413);
    expect(JSON.parse(body).code).toBe('IMAGE_TOO_LARGE');
  });

  it('non-image content with an image name and type → 415 UNSUPPORTED_MEDIA_TYPE', async () => {
    const body = await problem(
      await submit(gw.url, Buffer.from('this is not a photo, just text\n'.repeat(20)), {}, 'holiday.jpg', 'image/jpeg'),
    );
    expect(body.code).toBe('UNSUPPORTED_MEDIA_TYPE');
  });

  it('truncated image → 422 IMAGE_UNREADABLE', async () => {
    const body = await problem(await submit(gw.url, await truncatedJpeg()));
    expect(body.code).toBe('IMAGE_UNREADABLE');
  });

  it('a 1 KB PNG claiming 50000×50000 → 422 IMAGE_DIMENSIONS_TOO_LARGE, decided from the header', async () => {
    const bomb = pngClaiming(50_000, 50_000);
    expect(bomb.length).toBeLessThan(2048);
    const body = await problem(await submit(gw.url, bomb, {}, 'bomb.png', 'image/png'));
    expect(body).toMatchObject({ code: 'IMAGE_DIMENSIONS_TOO_LARGE', width: 50_000, height: 50_000 });
  });

  it('output over the pixel limit → 422 IMAGE_DIMENSIONS_TOO_LARGE', async () => {
    const img = await sharp({ create: { width: 2000, height: 2000, channels: 3, background: '#808080' } })
      .jpeg()
      .toBuffer();
    const body = await problem(await submit(gw.url, img, { scale: '4' }));
    expect(body).toMatchObject({ code: 'IMAGE_DIMENSIONS_TOO_LARGE', scale: 4 });
  });

  it('unknown engine → 400 UNKNOWN_ENGINE listing the engines', async () => {
    const body = await problem(await submit(gw.url, await smallPhoto(), { engine: 'magic' }));
    expect(body.code).toBe('UNKNOWN_ENGINE');
    expect(body.available).toEqual(expect.arrayContaining(['classic', 'slow']));
  });

  it('not multipart → 415 MULTIPART_REQUIRED; unknown route → 404 problem', async () => {
    const body = await problem(
      await fetch(`${gw.url}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' }),
    );
    expect(body.code).toBe('MULTIPART_REQUIRED');
    expect((await problem(await fetch(`${gw.url}/v2/nothing`))).code).toBe('ROUTE_NOT_FOUND');
  });

  it('unknown job → 404 JOB_NOT_FOUND', async () => {
    expect((await problem(await fetch(`${gw.url}/v1/jobs/j_00000000000000000000`))).code).toBe('JOB_NOT_FOUND');
    expect((await problem(await fetch(`${gw.url}/v1/jobs/../../etc/passwd/result`))).status).toBe(404);
    expect((await problem(await fetch(`${gw.url}/v1/jobs/nonsense/result`))).code).toBe('JOB_NOT_FOUND');
  });

  it('after all of the above, a good job still completes', async () => {
    await expectGoodJobCompletes();
  });
});

describe('cancel', () => {
  it('cancels a queued job: 409 before, canceled after, files deleted, idempotent', async () => {
    const res = await submit(gw.url, await smallPhoto(), { engine: 'nobody' });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    const early = await problem(await fetch(`${gw.url}/v1/jobs/${id}/result`));
    expect(early).toMatchObject({ code: 'JOB_NOT_COMPLETED', status: 409 });
    expect(early.detail).toContain('queued');
    expect(existsSync(join(gw.storageDir, id))).toBe(true);
    const del = await fetch(`${gw.url}/v1/jobs/${id}`, { method: 'DELETE' });
    expect(del.status).toBe(200);
    expect(((await del.json()) as { status: string }).status).toBe('canceled');
    expect(existsSync(join(gw.storageDir, id))).toBe(false);
    expect(((await (await fetch(`${gw.url}/v1/jobs/${id}`)).json()) as { status: string }).status).toBe('canceled');
    const again = await fetch(`${gw.url}/v1/jobs/${id}`, { method: 'DELETE' });
    expect(again.status).toBe(200);
  });

  it('cancels an active job: its engine is told to stop, the job ends canceled, the engine serves the next job', async () => {
    const res = await submit(gw.url, await smallPhoto('jpeg', 100), { engine: 'slow', scale: '1' });
    const { id } = (await res.json()) as { id: string };
    await waitForStatus(gw.url, id, ['active']);
    const del = await fetch(`${gw.url}/v1/jobs/${id}`, { method: 'DELETE' });
    expect(del.status).toBe(200);
    await worker.waitForLog((r) => r.jobId === id && String(r.reason).startsWith('JOB_CANCELED'), 20_000);
    const view = (await (await fetch(`${gw.url}/v1/jobs/${id}`)).json()) as { status: string };
    expect(view.status).toBe('canceled');
    expect(existsSync(join(gw.storageDir, id))).toBe(false);
    await expectGoodJobCompletes();
  });
  it('a cancel that races the end of a job leaves it canceled or completed, never both (no result, no files, no return value)', async () => {
    // The paced engine answers after 40 ms: cancels land before, during and after the engine's answer, the result's
    // commit and BullMQ's completion.
    const photo = await smallPhoto('jpeg', 64);
    // The delay walks to the boundary between the two answers and stays there: one step later after 'canceled', one
    // earlier after 'completed', so most cancels land in the moments around the job's end.
    const outcomes: { id: string; answer: string }[] = [];
    let delay = 30;
    for (let i = 0; i < 40; i++) {
      const { id } = (await (await submit(gw.url, photo, { engine: 'paced', scale: '1' })).json()) as { id: string };
      await new Promise((r) => setTimeout(r, delay));
      const del = await fetch(`${gw.url}/v1/jobs/${id}`, { method: 'DELETE' });
      expect({ status: del.status, body: del.status === 200 ? 'ok' : await del.text() }).toEqual({ status: 200, body: 'ok' });
      const answer = ((await del.json()) as { status: string }).status;
      outcomes.push({ id, answer });
      delay = Math.max(0, delay + (answer === 'canceled' ? 2 : -1));
    }
    // The walk reached the boundary: both answers occurred.
    expect(new Set(outcomes.map((o) => o.answer))).toEqual(new Set(['canceled', 'completed']));
    const redisClient = redis.client();
    for (const { id, answer } of outcomes) {
      const view = await fetch(`${gw.url}/v1/jobs/${id}`);
      if (answer !== 'canceled') {
        // It had finished: cancelling a finished job deletes it (410 from then on).
        expect(view.status).toBe(410);
        continue;
      }
      expect(((await view.json()) as { status: string }).status).toBe('canceled');
      // The job settles (gone, or failed as canceled) with no return value, and its files are gone.
      const hash = await until(
        `job ${id} to settle`,
        async () => {
          const h = await redisClient.hgetall(`${keys.queueBase('paced')}:${id}`);
          return Object.keys(h).length === 0 || h.finishedOn ? h : undefined;
        },
        20_000,
      );
      expect({ id, returnvalue: hash.returnvalue ?? null }).toEqual({ id, returnvalue: null });
      expect((await fetch(`${gw.url}/v1/jobs/${id}/result`)).status).not.toBe(200);
      await until(`job ${id}'s files to be gone`, async () => !existsSync(join(gw.storageDir, id)), 20_000);
    }
  });
});

describe('engine failures', () => {
  it('an engine that crashes mid-job fails each attempt with ENGINE_CRASHED and is replaced; the job fails after 3 attempts', async () => {
    const res = await submit(gw.url, await smallPhoto('jpeg', 64), { engine: 'crash' });
    const { id } = (await res.json()) as { id: string };
    const view = (await waitForStatus(gw.url, id, ['failed'], 90_000)) as { error: { code: string; message: string }; attempts: number };
    expect(view.error.code).toBe('ENGINE_CRASHED');
    expect(view.error.message).toMatch(/exit(ed)? (with )?code 3/);
    expect(view.attempts).toBe(3);
    await expectGoodJobCompletes();
  });
});

describe('Redis outage', () => {
  it('answers 503 with Retry-After while Redis is down, and recovers by itself', async () => {
    await redis.stop();
    await until('readyz 503', async () => (await fetch(`${gw.url}/readyz`)).status === 503);
    const res = await submit(gw.url, await smallPhoto('jpeg', 64));
    const body = await problem(res);
    expect(res.status).toBe(503);
    expect(body.code).toBe('REDIS_UNAVAILABLE');
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
    expect((await fetch(`${gw.url}/healthz`)).status).toBe(200);
    await redis.start();
    await until('readyz 200', async () => (await fetch(`${gw.url}/readyz`)).status === 200, 30_000, 200);
    await until(
      'worker back',
      async () => ((await (await fetch(`${gw.url}/v1/system`)).json()) as { hosts: unknown[] }).hosts.length > 0,
      30_000,
      200,
    );
    await expectGoodJobCompletes();
  });
});
