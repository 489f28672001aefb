import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KEY_PREFIX, queueName, redisOptions } from '@photoenhance/queue';
import { completions, lockHolder } from './support/chaos.js';
import { startTestRedis, type TestRedis } from './support/redis.js';
import {
  fixtureEngine,
  startGateway,
  startWorker,
  submit,
  until,
  waitForStatus,
  type RunningGateway,
  type RunningWorker,
} from './support/stack.js';

/**
 * Prefetch through the real worker app and engine processes: while the engine runs one job the worker holds the next
 * one (fetched, staged), renews its lock, hands it back when the host starts holding, and loses nothing on kill -9.
 */
const HOST = 'prefetch-host';
let redis: TestRedis;
let gw: RunningGateway;
let cfgDir: string;
let image: Buffer;
let queue: Queue;
const workers: RunningWorker[] = [];

async function spawnWorker(delayMs: number, env: Record<string, string> = {}): Promise<RunningWorker> {
  const cfg = join(cfgDir, `worker-${delayMs}.json`);
  writeFileSync(cfg, JSON.stringify({ engines: [fixtureEngine('slow', 'sleep', delayMs)] }));
  const w = await startWorker({
    REDIS_URL: redis.url,
    STORAGE_DIR: gw.storageDir,
    WORKER_CONFIG: cfg,
    HOST_ID: HOST,
    PREFETCH: '1',
    ...env,
  });
  workers.push(w);
  await w.waitForLog((r) => r.msg === 'worker ready');
  return w;
}

/** Submit, resending through 503s (right after start-up the gateway may not have seen the worker's heartbeat yet). */
async function submitAccepted(): Promise<string> {
  const res = await until(
    'the gateway to accept the job',
    async () => {
      const r = await submit(gw.url, image, { engine: 'slow', format: 'png' }, 'a.png', 'image/png');
      if (r.status === 503) {
        await r.body?.cancel();
        return undefined;
      }
      return r;
    },
    30_000,
    200,
  );
  expect(res.status).toBe(202);
  return ((await res.json()) as { id: string }).id;
}

/** Engine-completion lines in a job's log: one per engine run that finished. */
async function engineRuns(id: string): Promise<number> {
  const lines = await redis.client().lrange(`${KEY_PREFIX}:${queueName('slow')}:${id}:logs`, 0, -1);
  return lines.filter((l) => l.includes(': done by ')).length;
}

const state = (id: string): Promise<string> => queue.getJobState(id);
const view = async (id: string): Promise<{ status: string; startedAt?: string }> =>
  (await (await fetch(`${gw.url}/v1/jobs/${id}`)).json()) as { status: string; startedAt?: string };

beforeAll(async () => {
  redis = await startTestRedis();
  gw = await startGateway(redis.url, { knownEngines: ['slow'] });
  cfgDir = mkdtempSync(join(tmpdir(), 'pe-prefetch-'));
  image = await sharp({ create: { width: 32, height: 32, channels: 3, background: '#446688' } })
    .png()
    .toBuffer();
  queue = new Queue(queueName('slow'), { connection: { ...redisOptions(redis.url) }, prefix: KEY_PREFIX });
}, 60_000);

afterAll(async () => {
  for (const w of workers) await w.stop('SIGKILL');
  await queue?.close();
  await gw?.close();
  await redis?.close();
  if (cfgDir) rmSync(cfgDir, { recursive: true, force: true });
}, 30_000);

async function stopAll(): Promise<void> {
  for (const w of workers.splice(0)) await w.stop();
}

describe('prefetch', () => {
  it('holds exactly one more job per busy engine, and hands it back to the queue when the host starts holding', async () => {
    // a runs long enough for the checks below to see b still held ready on a loaded machine.
    const w = await spawnWorker(4000, { ADMISSION_CHECK_MS: '100' });
    const [a, b, c] = [await submitAccepted(), await submitAccepted(), await submitAccepted()];
    // a runs, b is held ready (active, locked by this worker), c stays queued: depth 1.
    await until('a running and b prefetched', async () => (await state(a)) === 'active' && (await state(b)) === 'active', 30_000, 50);
    expect(await state(c)).toBe('waiting');
    expect((await lockHolder(redis.client(), 'slow', b))?.pid).toBe(w.pid);
    // b is BullMQ-active but not at the engine: it reads as queued everywhere (job view, counts, dashboard lists).
    await until('a started at its engine', async () => (await view(a)).status === 'active', 10_000, 20);
    const vb = await view(b);
    expect(vb.status).toBe('queued');
    expect(vb.startedAt).toBeUndefined();
    expect((await view(a)).startedAt).toBeTruthy();
    const sys = (await (await fetch(`${gw.url}/v1/system`)).json()) as { queues: Record<string, Record<string, number>> };
    expect(sys.queues.slow).toMatchObject({ active: 1, waiting: 2 });
    const list = async (s: string): Promise<string[]> =>
      ((await (await fetch(`${gw.url}/dashboard/api/jobs?state=${s}&engine=slow`)).json()) as { jobs: Array<{ id: string }> }).jobs.map(
        (j) => j.id,
      );
    expect(await list('active')).toEqual([a]);
    expect(await list('queued')).toEqual(expect.arrayContaining([b, c]));

    // The host starts holding: the prefetched job goes back to the queue at once; the running one finishes.
    const put = (body: Record<string, number>): Promise<Response> =>
      fetch(`${gw.url}/v1/system/hosts/${HOST}/admission`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    expect((await put({ minAvailableBytes: 1024 ** 5 })).status).toBe(202);
    await w.waitForLog((r) => r.msg === 'host is holding: the prefetched job goes back to the queue', 10_000);
    await until('b back in the queue', async () => ['delayed', 'waiting'].includes(await state(b)), 5_000, 20);
    expect(await state(a)).toBe('active');
    expect((await waitForStatus(gw.url, a, ['completed', 'failed'])).status).toBe('completed');
    expect(['delayed', 'waiting']).toContain(await state(b));
    expect(await state(c)).toBe('waiting');

    expect((await put({ minAvailableBytes: 0 })).status).toBe(202);
    for (const id of [b, c]) expect((await waitForStatus(gw.url, id, ['completed', 'failed'])).status).toBe('completed');
    for (const id of [a, b, c]) expect(await engineRuns(id)).toBe(1);
    await stopAll();
  }, 90_000);

  it('a prefetched job canceled is canceled like a queued one: it never reaches the engine', async () => {
    await spawnWorker(1500);
    const [a, b] = [await submitAccepted(), await submitAccepted()];
    await until('a running and b prefetched', async () => (await state(a)) === 'active' && (await state(b)) === 'active', 30_000, 50);
    expect((await view(b)).status).toBe('queued');
    const del = await fetch(`${gw.url}/v1/jobs/${b}`, { method: 'DELETE' });
    expect(del.status).toBe(200);
    expect(((await del.json()) as { status: string }).status).toBe('canceled');
    await until('b left the worker', async () => (await state(b)) !== 'active', 10_000, 20);
    expect((await view(b)).status).toBe('canceled');
    expect((await waitForStatus(gw.url, a, ['completed', 'failed'])).status).toBe('completed');
    // No attempt line: the engine never had it.
    const lines = await redis.client().lrange(`${KEY_PREFIX}:${queueName('slow')}:${b}:logs`, 0, -1);
    expect(lines.filter((l) => l.includes('attempt '))).toEqual([]);
    expect(await engineRuns(a)).toBe(1);
    await stopAll();
  }, 60_000);

  it('a host does not prefetch while another host has a free engine for the job', async () => {
    const beat = { HEARTBEAT_MS: '300' };
    const first = await spawnWorker(1500, beat);
    const second = await spawnWorker(1500, { ...beat, HOST_ID: 'prefetch-peer' });
    await first.waitForLog((r) => r.msg === 'prefetch paused: another host has a free engine for these jobs', 10_000);
    const [a, b] = [await submitAccepted(), await submitAccepted()];
    await until('both running', async () => (await view(a)).status === 'active' && (await view(b)).status === 'active', 30_000, 50);
    // One on each host: the first did not hold b back for its busy engine.
    const holders = [(await lockHolder(redis.client(), 'slow', a))?.pid, (await lockHolder(redis.client(), 'slow', b))?.pid];
    expect(holders.sort()).toEqual([first.pid, second.pid].sort());
    for (const id of [a, b]) expect((await waitForStatus(gw.url, id, ['completed', 'failed'])).status).toBe('completed');
    await stopAll();
  }, 60_000);

  it('PREFETCH=0 takes one job at a time, as before', async () => {
    await spawnWorker(800, { PREFETCH: '0' });
    const [a, b] = [await submitAccepted(), await submitAccepted()];
    await until('a running', async () => (await state(a)) === 'active', 30_000, 50);
    // While a runs (800 ms), b is never fetched.
    const until_ = Date.now() + 500;
    while (Date.now() < until_ && (await state(a)) === 'active') expect(await state(b)).toBe('waiting');
    for (const id of [a, b]) expect((await waitForStatus(gw.url, id, ['completed', 'failed'])).status).toBe('completed');
    await stopAll();
  }, 60_000);

  it('kill -9 with a job prefetched: its lock was renewed while it waited, and after the kill it runs exactly once', async () => {
    const lock = { LOCK_DURATION_MS: '1000', STALLED_INTERVAL_MS: '300', HEARTBEAT_MS: '500' };
    const victim = await spawnWorker(6000, lock);
    const [a, b] = [await submitAccepted(), await submitAccepted()];
    await until('a running and b prefetched', async () => (await state(a)) === 'active' && (await state(b)) === 'active', 30_000, 50);
    const held = await lockHolder(redis.client(), 'slow', b);
    expect(held?.pid).toBe(victim.pid);
    // Past two lock durations later the prefetched job is still locked by the same holder: BullMQ renews it.
    const t0 = Date.now();
    await until('two lock durations', () => Date.now() - t0 > 2_200, 5_000, 100);
    expect(await state(b)).toBe('active');
    expect(await lockHolder(redis.client(), 'slow', b)).toEqual(held);
    expect(await engineRuns(a)).toBe(0);

    await victim.stop('SIGKILL');
    await spawnWorker(300, lock);
    for (const id of [a, b]) expect((await waitForStatus(gw.url, id, ['completed', 'failed'], 60_000)).status).toBe('completed');
    // Neither lost nor run twice: one finished engine run and one completion each.
    const done = await completions(redis.client(), 'slow');
    for (const id of [a, b]) {
      expect(await engineRuns(id)).toBe(1);
      expect(done.get(id)).toBe(1);
    }
    await stopAll();
  }, 120_000);
});
