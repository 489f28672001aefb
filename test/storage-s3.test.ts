import { existsSync, readdirSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createStorage, type Storage } from '@photoenhance/storage';
import { smallPhoto, truncatedJpeg } from './support/images.js';
import { fixtureEngine, startGateway, startStack, submit, until, waitForStatus, type RunningGateway, type Stack } from './support/stack.js';
import { makeZip, readZip } from './support/zip.js';

/**
 * The whole system on object storage: the real gateway (in this process) and the real worker (a child process) with
 * STORAGE_URL=s3://… against a real s3rver process; they share nothing but Redis and the bucket.
 */
let stack: Stack;
let bucket: Storage;
const extra: RunningGateway[] = [];

beforeAll(async () => {
  stack = await startStack({
    storage: 's3',
    // 4 s: the running job must still be running when the outage starts, however long a loaded machine takes to stop s3.
    engines: [fixtureEngine('quick', 'resize'), fixtureEngine('slow', 'sleep', 4000)],
    // The event-loop guard off: a loaded test machine must not turn these checks into 503 OVERLOADED.
    gateway: { knownEngines: ['quick', 'slow'], defaultEngine: 'quick', jobAttempts: 3, jobBackoffMs: 300, maxEventLoopDelayMs: 0 },
    workerEnv: { STORAGE_RETRY_MS: '300' },
  });
  bucket = await createStorage({ ...stack.s3!.settings('jobs'), storageDir: '/nonexistent' });
});

afterAll(async () => {
  for (const g of extra) await g.close();
  bucket?.close();
  await stack?.close();
});

async function completedJob(fields: Record<string, string> = {}): Promise<string> {
  const res = await submit(stack.gw.url, await smallPhoto('jpeg', 160), { scale: '2', ...fields });
  expect(res.status, await res.clone().text()).toBe(202);
  const { id } = (await res.json()) as { id: string };
  const view = await waitForStatus(stack.gw.url, id, ['completed', 'failed']);
  expect(view.status, JSON.stringify(view)).toBe('completed');
  return id;
}

async function bytesOf(key: string): Promise<Buffer> {
  const obj = await bucket.openRead(key);
  const chunks: Buffer[] = [];
  for await (const c of obj!.stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

describe('on S3-compatible storage', () => {
  it('submit → complete → download streams from the bucket with Content-Length, ETag and Range', async () => {
    const id = await completedJob();
    // Nothing in the gateway's folder: input and output live in the bucket.
    expect(existsSync(stack.gw.storageDir) ? readdirSync(stack.gw.storageDir).filter((n) => n.startsWith('j_')) : []).toEqual([]);
    const input = await bucket.stat(`${id}/input.jpg`);
    expect(input?.size).toBeGreaterThan(0);
    const stored = await bytesOf(`${id}/output.jpg`);

    const whole = await fetch(`${stack.gw.url}/v1/jobs/${id}/result`);
    expect(whole.status).toBe(200);
    expect(whole.headers.get('content-type')).toBe('image/jpeg');
    expect(Number(whole.headers.get('content-length'))).toBe(stored.length);
    expect(whole.headers.get('accept-ranges')).toBe('bytes');
    const etag = whole.headers.get('etag');
    expect(etag).toBe((await bucket.stat(`${id}/output.jpg`))!.etag);
    expect(Buffer.from(await whole.arrayBuffer()).equals(stored)).toBe(true);

    const part = await fetch(`${stack.gw.url}/v1/jobs/${id}/result`, { headers: { range: 'bytes=10-109' } });
    expect(part.status, await part.clone().text()).toBe(206);
    expect(part.headers.get('content-range')).toBe(`bytes 10-109/${stored.length}`);
    expect(part.headers.get('content-length')).toBe('100');
    expect(Buffer.from(await part.arrayBuffer()).equals(stored.subarray(10, 110))).toBe(true);

    const tail = await fetch(`${stack.gw.url}/v1/jobs/${id}/result`, { headers: { range: 'bytes=-20' } });
    expect(tail.status).toBe(206);
    expect(Buffer.from(await tail.arrayBuffer()).equals(stored.subarray(stored.length - 20))).toBe(true);

    const beyond = await fetch(`${stack.gw.url}/v1/jobs/${id}/result`, { headers: { range: `bytes=${stored.length}-` } });
    expect(beyond.status).toBe(416);
    expect(beyond.headers.get('content-range')).toBe(`bytes */${stored.length}`);
    expect(((await beyond.json()) as { code: string }).code).toBe('RANGE_NOT_SATISFIABLE');

    const cached = await fetch(`${stack.gw.url}/v1/jobs/${id}/result`, { headers: { 'if-none-match': etag! } });
    expect(cached.status).toBe(304);

    // The worker's staging folders are gone once the job is done.
    const log = stack.worker.output.join('\n');
    expect(log).not.toMatch(/"level":50/);
  });

  it('validation while streaming works as on a folder: 413 past the limit, 415 by content, 422 truncated; nothing stays in the bucket', async () => {
    const gw = await startGateway(stack.redis.url, {
      ...stack.s3!.settings('jobs'),
      knownEngines: ['quick', 'slow'],
      defaultEngine: 'quick',
      maxUploadBytes: 6 * 1024 * 1024,
      maxEventLoopDelayMs: 0,
    });
    extra.push(gw);
    const before = (await bucket.staleJobs(0, Date.now() + 1e9)).length;
    const photo = await smallPhoto('jpeg', 160);
    // Past a multipart part (5 MiB) and past the limit: the multipart upload is under way when the limit stops it.
    const tooBig = await submit(gw.url, Buffer.concat([photo, Buffer.alloc(12 * 1024 * 1024, 1)]), { scale: '1' });
    expect(tooBig.status).toBe(413);
    expect(((await tooBig.json()) as { code: string }).code).toBe('IMAGE_TOO_LARGE');
    const notImage = await submit(gw.url, Buffer.from('just some text, not a photo'), { scale: '1' });
    expect(notImage.status).toBe(415);
    const truncated = await submit(gw.url, await truncatedJpeg(), { scale: '1' });
    expect(truncated.status).toBe(422);
    expect(((await truncated.json()) as { code: string }).code).toBe('IMAGE_UNREADABLE');
    expect((await bucket.staleJobs(0, Date.now() + 1e9)).length).toBe(before);
  });

  it('RESULT_REDIRECT=presigned answers 302 to a short-lived URL of the bucket', async () => {
    const id = await completedJob();
    const gw = await startGateway(stack.redis.url, {
      ...stack.s3!.settings('jobs'),
      knownEngines: ['quick', 'slow'],
      defaultEngine: 'quick',
      resultRedirect: 'presigned',
      presignExpiresSeconds: 60,
      maxEventLoopDelayMs: 0,
    });
    extra.push(gw);
    const r = await fetch(`${gw.url}/v1/jobs/${id}/result`, { redirect: 'manual' });
    expect(r.status, await r.clone().text()).toBe(302);
    const location = r.headers.get('location')!;
    expect(location).toContain(`${stack.s3!.endpoint}/${stack.s3!.bucket}/jobs/${id}/output.jpg`);
    expect(location).toMatch(/X-Amz-Expires=60/);
    const direct = await fetch(location);
    expect(direct.status).toBe(200);
    expect(direct.headers.get('content-disposition')).toContain('photo_enhanced.jpg');
    expect(Buffer.from(await direct.arrayBuffer()).equals(await bytesOf(`${id}/output.jpg`))).toBe(true);
  });

  it('thumbnails are made once and kept in the bucket beside the job', async () => {
    const id = await completedJob();
    const r = await fetch(`${stack.gw.url}/dashboard/api/jobs/${id}/thumbs/output`);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('image/webp');
    expect((await r.arrayBuffer()).byteLength).toBeGreaterThan(0);
    expect(await bucket.stat(`${id}/thumb-output.webp`)).toBeDefined();
  });

  it('batches: photos and a ZIP archive go to the bucket, results.zip streams from it', async () => {
    const jpeg = await smallPhoto('jpeg', 96);
    const form = new FormData();
    form.append('scale', '1');
    form.append('images', new Blob([jpeg], { type: 'image/jpeg' }), 'a.jpg');
    form.append('images', new Blob([jpeg], { type: 'image/jpeg' }), 'b.jpg');
    const res = await fetch(`${stack.gw.url}/v1/batches`, { method: 'POST', body: form });
    expect(res.status).toBe(202);
    const accepted = (await res.json()) as { id: string; links: { self: string; results: string } };
    await until(
      'batch completed',
      async () => ((await (await fetch(`${stack.gw.url}${accepted.links.self}`)).json()) as { status: string }).status === 'completed',
      30_000,
      100,
    );
    const zip = await readZip(Buffer.from(await (await fetch(`${stack.gw.url}${accepted.links.results}`)).arrayBuffer()));
    expect([...zip.keys()].sort()).toEqual(['a_enhanced.jpg', 'b_enhanced.jpg']);
    expect(zip.get('a_enhanced.jpg')!.subarray(0, 2).toString('hex')).toBe('ffd8');

    const archive = new FormData();
    archive.append('scale', '1');
    archive.append(
      'archive',
      new Blob(
        [
          await makeZip([
            { name: 'x/one.jpg', data: jpeg },
            { name: 'two.jpg', data: jpeg },
          ]),
        ],
        { type: 'application/zip' },
      ),
      'photos.zip',
    );
    const ar = await fetch(`${stack.gw.url}/v1/batches`, { method: 'POST', body: archive });
    expect(ar.status).toBe(202);
    const a2 = (await ar.json()) as { id: string; total: number; links: { self: string } };
    expect(a2.total).toBe(2);
    await until(
      'archive batch completed',
      async () => ((await (await fetch(`${stack.gw.url}${a2.links.self}`)).json()) as { status: string }).status === 'completed',
      30_000,
      100,
    );
    // The archive itself is never published to the bucket.
    expect(await bucket.staleJobs(0, Date.now() + 1e9)).not.toContain(a2.id);
  });

  it("DELETE removes the job's objects from the bucket", async () => {
    const id = await completedJob();
    expect(await bucket.stat(`${id}/output.jpg`)).toBeDefined();
    const r = await fetch(`${stack.gw.url}/v1/jobs/${id}`, { method: 'DELETE' });
    expect(r.status).toBe(200);
    expect(await bucket.stat(`${id}/output.jpg`)).toBeUndefined();
    expect(await bucket.stat(`${id}/input.jpg`)).toBeUndefined();
    expect((await fetch(`${stack.gw.url}/v1/jobs/${id}/result`)).status).toBe(410);
  });

  it("TTL expiry deletes expired jobs' objects and orphans the queue no longer knows", async () => {
    const gw = await startGateway(stack.redis.url, {
      ...stack.s3!.settings('jobs'),
      knownEngines: ['quick', 'slow'],
      defaultEngine: 'quick',
      jobTtlSeconds: 1,
      sweepIntervalMs: 3_600_000,
      maxEventLoopDelayMs: 0,
    });
    extra.push(gw);
    const res = await submit(gw.url, await smallPhoto('jpeg', 96), { scale: '1' });
    const { id } = (await res.json()) as { id: string };
    expect((await waitForStatus(gw.url, id, ['completed', 'failed'])).status).toBe('completed');
    // An orphan: files with no job record.
    const { Readable } = await import('node:stream');
    await bucket.writeStream('j_orphanorphanorphanorphan1/input.jpg', Readable.from([Buffer.from('x')]), { limit: 10 });
    await until(
      'the sweeper expires the job',
      async () => {
        await gw.sweeper.sweepOnce(Date.now() + 5000);
        return !(await bucket.stat(`${id}/output.jpg`));
      },
      20_000,
      300,
    );
    expect(await bucket.stat(`${id}/input.jpg`)).toBeUndefined();
    expect(await bucket.stat('j_orphanorphanorphanorphan1/input.jpg')).toBeUndefined();
    const r = await fetch(`${gw.url}/v1/jobs/${id}`);
    expect(r.status).toBe(410);
  });

  it('an outage: 503 STORAGE_UNAVAILABLE and /readyz says so; job attempts fail retryably; after it, every job completes', async () => {
    // One job running on the slow engine (its result commit will meet the outage), one queued behind it.
    const photo = await smallPhoto('jpeg', 96);
    const ids: string[] = [];
    for (let i = 0; i < 2; i++) {
      const r = await submit(stack.gw.url, photo, { engine: 'slow', scale: '1' });
      expect(r.status).toBe(202);
      ids.push(((await r.json()) as { id: string }).id);
    }
    await waitForStatus(stack.gw.url, ids[0]!, ['active']);
    await stack.s3!.stop();
    try {
      const ready = await fetch(`${stack.gw.url}/readyz`);
      expect(ready.status).toBe(503);
      const problem = (await ready.json()) as { code: string; storage: string; detail: string };
      expect(problem).toMatchObject({ code: 'STORAGE_UNAVAILABLE', storage: 'unavailable' });
      expect(problem.detail).toMatch(/S3_ENDPOINT/);

      const refused = await submit(stack.gw.url, photo, { scale: '1' });
      expect(refused.status).toBe(503);
      expect(refused.headers.get('retry-after')).toBeTruthy();
      expect(((await refused.json()) as { code: string }).code).toBe('STORAGE_UNAVAILABLE');

      const down = await fetch(`${stack.gw.url}/v1/jobs/${ids[0]}/result`);
      expect(down.status).toBe(409); // not completed yet: the status comes from Redis, which is fine

      // Both jobs meet the outage: an attempt fails with the retryable code, and the job goes back to the queue.
      for (const id of ids) {
        await until(
          `job ${id} records STORAGE_UNAVAILABLE`,
          async () => {
            const v = (await (await fetch(`${stack.gw.url}/v1/jobs/${id}`)).json()) as { status: string; lastError?: { code: string } };
            return v.lastError?.code === 'STORAGE_UNAVAILABLE' && v.status !== 'failed' ? v : undefined;
          },
          30_000,
          100,
        );
      }
    } finally {
      await stack.s3!.start();
    }
    for (const id of ids) expect((await waitForStatus(stack.gw.url, id, ['completed', 'failed'], 60_000)).status).toBe('completed');
    expect((await fetch(`${stack.gw.url}/readyz`)).status).toBe(200);
    const r = await fetch(`${stack.gw.url}/v1/jobs/${ids[1]}/result`);
    expect(r.status).toBe(200);
  });
});
