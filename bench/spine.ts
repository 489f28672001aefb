import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import sharp from 'sharp';
import { KEY_PREFIX, queueName, redisOptions } from '@photoenhance/queue';
import { startTestRedis } from '../test/support/redis.js';
import { REPO, startGateway, startWorker, submit, until } from '../test/support/stack.js';

const fixture = join(REPO, 'test/fixtures/engines/fixture-engine.mjs');

export interface Row {
  section: string;
  metric: string;
  value: number;
  unit: string;
  goal?: string;
  note?: string;
}

/** Queue `n` jobs through the gateway, then start a worker and measure how busy its single engine was kept. */
async function drainRun(engine: 'sleep100' | 'noop', n: number): Promise<{ jobsPerSecond: number; spanMs: number; perJobMs: number }> {
  const redis = await startTestRedis();
  const gw = await startGateway(redis.url, { knownEngines: [engine] });
  const tiny = await sharp({ create: { width: 16, height: 16, channels: 3, background: '#888' } })
    .jpeg()
    .toBuffer();
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = await submit(gw.url, tiny, { engine, scale: '1' });
    ids.push(((await r.json()) as { id: string }).id);
  }
  // Submissions are done: stop the gateway, so what is measured is the worker and its engine alone (on 2 cores the
  // gateway's event listeners would otherwise compete with them).
  await gw.close();
  const cfg = join(gw.storageDir, 'worker.json');
  const mode = engine === 'noop' ? ['--mode', 'noop'] : ['--mode', 'sleep', '--delay-ms', '100'];
  writeFileSync(cfg, JSON.stringify({ engines: [{ name: engine, command: [process.execPath, fixture, ...mode] }] }));
  const worker = await startWorker({
    REDIS_URL: redis.url,
    STORAGE_DIR: gw.storageDir,
    WORKER_CONFIG: cfg,
    LOG_LEVEL: 'warn',
    HEARTBEAT_MS: '2000',
  });
  const q = new Queue(queueName(engine), { connection: { ...redisOptions(redis.url) }, prefix: KEY_PREFIX });
  await until('all jobs finished', async () => (await q.getCompletedCount()) + (await q.getFailedCount()) >= n, 600_000, 200);
  const jobs = await q.getJobs(['completed'], 0, n);
  // From the moment the engine could start the first job to the last finish: excludes the one-off engine start-up.
  const start = Math.min(...jobs.map((j) => j.processedOn ?? Infinity));
  const end = Math.max(...jobs.map((j) => j.finishedOn ?? 0));
  const spanMs = end - start;
  await q.close();
  await worker.stop();
  await redis.close();
  rmSync(gw.storageDir, { recursive: true, force: true });
  return { jobsPerSecond: (jobs.length / spanMs) * 1000, spanMs, perJobMs: spanMs / jobs.length };
}

export async function benchSpine(opts: { jobs: number }): Promise<Row[]> {
  const rows: Row[] = [];
  const duty = await drainRun('sleep100', opts.jobs);
  rows.push({
    section: 'engine duty cycle (100 ms/job, 1 engine)',
    metric: 'jobs/s achieved ÷ 10',
    value: duty.jobsPerSecond / 10,
    unit: 'ratio',
    goal: '>= 0.97',
    note: `${opts.jobs} jobs in ${duty.spanMs} ms`,
  });
  const noop = await drainRun('noop', opts.jobs);
  rows.push({
    section: 'per-job overhead (no-op engine)',
    metric: 'time per job',
    value: noop.perJobMs,
    unit: 'ms',
    note: `${noop.jobsPerSecond.toFixed(1)} jobs/s`,
  });
  return rows;
}
