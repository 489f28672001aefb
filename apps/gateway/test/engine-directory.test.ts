import type { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, expect, it } from 'vitest';
import { startTestRedis, type TestRedis } from '../../../test/support/redis.js';
import { EngineDirectory } from '../src/engine-directory.js';

/** The engine directory against a real redis-server: how many host-list reads reach Redis. */
let server: TestRedis;
let redis: Redis;
beforeAll(async () => {
  server = await startTestRedis();
  redis = server.client();
});
afterAll(async () => {
  await server?.close();
});
beforeEach(async () => {
  await redis.config('RESETSTAT');
});

/** Host-list reads served since the last reset (each read is one ZRANGEBYSCORE on the host index). */
async function hostListReads(): Promise<number> {
  const m = /cmdstat_zrangebyscore:calls=(\d+)/.exec(await redis.info('commandstats'));
  return Number(m?.[1] ?? 0);
}

it('a flood of submissions for an engine no worker offers shares the fresh host-list reads', async () => {
  const dir = new EngineDirectory(redis, ['classic'], 'classic');
  const answers = await Promise.all(
    Array.from({ length: 50 }, () => dir.checkOffered('classic', { acceptWithoutWorker: true, retryAfterSeconds: 5 })),
  );
  expect(answers.every((w) => w?.includes('No live worker host offers the engine "classic"'))).toBe(true);
  // One read per request (and one more to re-check before refusing) was 100 reads for 50 requests.
  expect(await hostListReads()).toBeLessThanOrEqual(3);
});

it('a fresh read is one that starts after the call: it waits behind a read already in flight, and callers share it', async () => {
  const dir = new EngineDirectory(redis, [], 'classic');
  // All in one tick: the first read is in flight when the others ask.
  const inFlight = dir.hosts();
  const fresh1 = dir.hosts(true);
  const fresh2 = dir.hosts(true);
  const cached = dir.hosts();
  const [a, f1, f2, c] = await Promise.all([inFlight, fresh1, fresh2, cached]);
  expect(c).toBe(a);
  expect(f1).not.toBe(a);
  expect(f2).toBe(f1);
  expect(await hostListReads()).toBe(2);
});

it('an unknown engine is refused after one fresh read, and a refused flood does not read once per request', async () => {
  const dir = new EngineDirectory(redis, ['classic'], 'classic');
  const results = await Promise.allSettled(Array.from({ length: 30 }, () => dir.assertKnown('clasic')));
  expect(results.every((r) => r.status === 'rejected' && (r.reason as { code?: string }).code === 'UNKNOWN_ENGINE')).toBe(true);
  expect(await hostListReads()).toBeLessThanOrEqual(3);
});
