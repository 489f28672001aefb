import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KEY_PREFIX, queueName } from '@photoenhance/queue';
import { completions, lockHolder } from './support/chaos.js';
import { startAofRedis, type FaultRedis } from './support/faults.js';
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

/** Submit, resending through 503s (right after start-up the gateway may not have seen the worker's heartbeat yet). */
async function submitAccepted(url: string, image: Buffer): Promise<string> {
  const res = await until(
    'the gateway to accept the job',
    async () => {
      const r = await submit(url, image, { engine: 'slow', format: 'png' }, 'a.png', 'image/png');
      if (r.status === 503) {
        await r.body?.cancel();
        return undefined;
      }
      return r;
    },
    30_000,
    200,
  );
  const body = (await res.json()) as { id: string };
  expect({ status: res.status, body: res.status === 202 ? 'ok' : body }).toEqual({ status: 202, body: 'ok' });
  return body.id;
}

/** Engine-completion lines in a job's BullMQ log: one per engine run that finished. */
async function engineRuns(redis: FaultRedis, engine: string, id: string): Promise<string[]> {
  const lines = await redis.client().lrange(`${KEY_PREFIX}:${queueName(engine)}:${id}:logs`, 0, -1);
  return lines.filter((l) => l.includes(': done by '));
}

describe('a result computed while Redis was away is kept', () => {
  let redis: FaultRedis;
  let gw: RunningGateway;
  let worker: RunningWorker;
  let cfgDir: string;
  let image: Buffer;

  beforeAll(async () => {
    redis = await startAofRedis();
    gw = await startGateway(redis.url);
    cfgDir = mkdtempSync(join(tmpdir(), 'pe-wcfg-'));
    writeFileSync(join(cfgDir, 'worker.json'), JSON.stringify({ engines: [fixtureEngine('slow', 'sleep', 2500)] }));
    worker = await startWorker({
      REDIS_URL: redis.url,
      STORAGE_DIR: gw.storageDir,
      WORKER_CONFIG: join(cfgDir, 'worker.json'),
      // A lock long enough that its renewal never lapses on a busy machine: the test itself makes the lock run out
      // (PEXPIRE below), at the moment it chooses.
      LOCK_DURATION_MS: '10000',
      STALLED_INTERVAL_MS: '500',
    });
    await worker.waitForLog((r) => r.msg === 'worker ready');
    image = await sharp({ create: { width: 32, height: 32, channels: 3, background: '#446688' } })
      .png()
      .toBuffer();
  }, 60_000);

  afterAll(async () => {
    await worker?.stop();
    await gw?.close();
    await redis?.close();
    if (cfgDir) rmSync(cfgDir, { recursive: true, force: true });
  }, 30_000);

  it('Redis stops mid-job for longer than the lock: the job completes once, with the first result', async () => {
    const id = await submitAccepted(gw.url, image);
    await waitForStatus(gw.url, id, ['active'], 30_000);
    // The lock is about to expire when Redis goes away (as after any outage longer than the lock): it is gone when
    // Redis comes back, and the job is still active.
    const lockKey = `${KEY_PREFIX}:${queueName('slow')}:${id}:lock`;
    expect(await redis.client().pexpire(lockKey, 200)).toBe(1);
    await redis.stop('SIGTERM');
    const downAt = Date.now();
    // The engine finishes (2.5 s) while Redis is down.
    await until('the outage to outlast the job', () => Date.now() - downAt > 4_000, 10_000, 100);
    await redis.start();
    const upAt = Date.now();
    const body = await waitForStatus(gw.url, id, ['completed', 'failed', 'canceled'], 30_000);
    expect(body.status).toBe('completed');
    console.log(`committed ${Date.now() - upAt} ms after Redis came back`);
    // The engine ran once: its result was committed, not thrown away and computed again.
    expect(await engineRuns(redis, 'slow', id)).toHaveLength(1);
    expect(worker.output.some((l) => l.includes('stalled job moved back'))).toBe(false);
  }, 90_000);
});

describe("a dead or frozen worker's job runs again within 15 s (default lock, stalled and heartbeat settings)", () => {
  let redis: TestRedis;
  let gw: RunningGateway;
  let cfgDir: string;
  let image: Buffer;
  const workers: RunningWorker[] = [];

  const spawnWorker = async (): Promise<RunningWorker> => {
    // Defaults for everything recovery depends on (startWorker's test default heartbeat is faster).
    const w = await startWorker({
      REDIS_URL: redis.url,
      STORAGE_DIR: gw.storageDir,
      WORKER_CONFIG: join(cfgDir, 'worker.json'),
      HEARTBEAT_MS: '2000',
    });
    workers.push(w);
    await w.waitForLog((r) => r.msg === 'worker ready');
    return w;
  };

  beforeAll(async () => {
    redis = await startTestRedis();
    gw = await startGateway(redis.url);
    cfgDir = mkdtempSync(join(tmpdir(), 'pe-wcfg-'));
    writeFileSync(join(cfgDir, 'worker.json'), JSON.stringify({ engines: [fixtureEngine('slow', 'sleep', 4000)] }));
    await Promise.all([spawnWorker(), spawnWorker()]);
    image = await sharp({ create: { width: 32, height: 32, channels: 3, background: '#446688' } })
      .png()
      .toBuffer();
  }, 90_000);

  afterAll(async () => {
    for (const w of workers) {
      if (w.proc.exitCode === null && w.proc.signalCode === null) w.proc.kill('SIGCONT');
      await w.stop('SIGKILL');
    }
    await gw?.close();
    await redis?.close();
    if (cfgDir) rmSync(cfgDir, { recursive: true, force: true });
  }, 30_000);

  /** Submit, find the worker running it, hit it with `signal`, and time until another worker runs the job. */
  async function rerunAfter(signal: NodeJS.Signals): Promise<{ id: string; victim: RunningWorker; rerunMs: number }> {
    const id = await submitAccepted(gw.url, image);
    const client = redis.client();
    const first = await until(
      'a worker to take the job',
      () => lockHolder(client, 'slow', id).then((h) => (h?.pid ? h : undefined)),
      30_000,
    );
    const victim = workers.find((w) => w.pid === first.pid)!;
    expect(victim).toBeDefined();
    victim.proc.kill(signal);
    const at = Date.now();
    await until(
      'another worker to run the job',
      () => lockHolder(client, 'slow', id).then((h) => h && h.token !== first.token && h.pid !== victim.pid),
      40_000,
      50,
    );
    return { id, victim, rerunMs: Date.now() - at };
  }

  it('kill -9 of the worker running a job: another worker runs it within 15 s; it completes once', async () => {
    const { id, rerunMs } = await rerunAfter('SIGKILL');
    console.log(`kill -9: job ran again ${rerunMs} ms after its worker died`);
    expect(rerunMs).toBeLessThan(15_000);
    expect((await waitForStatus(gw.url, id, ['completed', 'failed'], 30_000)).status).toBe('completed');
    expect((await completions(redis.client(), 'slow')).get(id)).toBe(1);
    await spawnWorker(); // two live workers again for the next case
  }, 90_000);

  it('SIGSTOP of the worker running a job: another worker runs it within 15 s; the thawed worker does not finish it again', async () => {
    const { id, victim, rerunMs } = await rerunAfter('SIGSTOP');
    console.log(`SIGSTOP: job ran again ${rerunMs} ms after its worker froze`);
    expect(rerunMs).toBeLessThan(15_000);
    expect((await waitForStatus(gw.url, id, ['completed', 'failed'], 30_000)).status).toBe('completed');
    victim.proc.kill('SIGCONT');
    // Its engine finished meanwhile; the thawed worker finds the job is no longer its own and commits nothing.
    await victim.waitForLog((r) => r.jobId === id && typeof r.msg === 'string' && r.msg.includes('taken over'), 30_000);
    expect((await completions(redis.client(), 'slow')).get(id)).toBe(1);
  }, 90_000);
});
