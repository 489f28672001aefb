import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startTestRedis, type TestRedis } from './support/redis.js';
import { smallPhoto } from './support/images.js';
import { startGateway, startWorker, submit, until, waitForStatus, type RunningGateway, type RunningWorker } from './support/stack.js';

/** Finished jobs and their files expire after the TTL; then the API answers 410, not 404. */
let redis: TestRedis;
let gw: RunningGateway;
let worker: RunningWorker;

beforeAll(async () => {
  redis = await startTestRedis();
  // Sweep by hand (sweepOnce) rather than on the timer, so the test decides when.
  gw = await startGateway(redis.url, { jobTtlSeconds: 1, sweepIntervalMs: 3_600_000, knownEngines: ['classic', 'nobody'] });
  worker = await startWorker({ REDIS_URL: redis.url, STORAGE_DIR: gw.storageDir });
  await worker.waitForLog((r) => r.msg === 'worker ready');
});

afterAll(async () => {
  await worker?.stop();
  await gw?.close();
  await redis?.close();
});

it('expires a completed job and its files after the TTL: 410 JOB_EXPIRED for status and result', async () => {
  const res = await submit(gw.url, await smallPhoto('jpeg', 96), { scale: '1' });
  const { id } = (await res.json()) as { id: string };
  expect((await waitForStatus(gw.url, id, ['completed', 'failed'])).status).toBe('completed');
  expect(existsSync(join(gw.storageDir, id))).toBe(true);
  await until(
    'the sweeper expires the job',
    async () => (await gw.sweeper.sweepOnce()).expired > 0 || !existsSync(join(gw.storageDir, id)),
    15_000,
    200,
  );
  expect(existsSync(join(gw.storageDir, id))).toBe(false);
  for (const path of [`/v1/jobs/${id}`, `/v1/jobs/${id}/result`]) {
    const r = await fetch(`${gw.url}${path}`);
    expect(r.status, path).toBe(410);
    expect(((await r.json()) as { code: string }).code).toBe('JOB_EXPIRED');
  }
});

it('keeps a job that is still queued, however old its files look', async () => {
  // No worker runs "nobody": the job stays queued.
  const res = await submit(gw.url, await smallPhoto('jpeg', 64), { engine: 'nobody', scale: '1' });
  expect(res.status).toBe(202);
  const { id } = (await res.json()) as { id: string };
  await gw.sweeper.sweepOnce(Date.now() + 3_600_000); // an hour from now: every folder looks stale
  expect(existsSync(join(gw.storageDir, id))).toBe(true);
  expect(((await (await fetch(`${gw.url}/v1/jobs/${id}`)).json()) as { status: string }).status).toBe('queued');
});
