import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { Queue } from 'bullmq';
import sharp from 'sharp';
import { KEY_PREFIX, queueName, redisOptions } from '@photoenhance/queue';
import { startTestRedis } from '../test/support/redis.js';
import { REPO, startGateway, startWorker, submit, until } from '../test/support/stack.js';
import { samplePhoto } from '../test/support/images.js';

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
  const tiny = await sharp({ create: { width: 16, height: 16, channels: 3, background: '#888' } }).jpeg().toBuffer();
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
  const worker = await startWorker({ REDIS_URL: redis.url, STORAGE_DIR: gw.storageDir, WORKER_CONFIG: cfg, LOG_LEVEL: 'warn', HEARTBEAT_MS: '2000' });
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

function multipartBody(file: Buffer): { body: Buffer; contentType: string } {
  const boundary = '----pebench7f3a';
  const head = Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="scale"\r\n\r\n2\r\n--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="bench.jpg"\r\nContent-Type: image/jpeg\r\n\r\n`);
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  return { body: Buffer.concat([head, file, tail]), contentType: `multipart/form-data; boundary=${boundary}` };
}

async function load(url: string, body: Buffer, contentType: string, seconds: number, connections: number): Promise<autocannon.Result> {
  return autocannon({ url, method: 'POST', body, headers: { 'content-type': contentType }, connections, duration: seconds, pipelining: 1 });
}

/** Start a server process and wait for its URL: the bare handler prints it; the gateway answers /readyz. */
async function serverProcess(args: string[], env: Record<string, string>, url?: string): Promise<{ url: string; stop: () => Promise<void> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', ...args], { cwd: REPO, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  let printed = '';
  child.stdout!.on('data', (d: Buffer) => (printed += d.toString()));
  const found = await until('server up', async () => {
    if (url) return (await fetch(`${url}/readyz`).catch(() => undefined))?.status === 200 ? url : undefined;
    return /^http:\/\/\S+/m.exec(printed)?.[0];
  }, 60_000, 100);
  return {
    url: found,
    stop: () => new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    }),
  };
}

/**
 * 64 KiB JPEG: the real gateway vs a bare Fastify handler that only does queue.add, on the same Redis, in the same run,
 * each in its own process (as deployed), the load from this process.
 */
async function submissionRun(seconds: number, connections: number): Promise<Row[]> {
  let jpeg = await sharp(samplePhoto(3)).resize({ width: 300 }).jpeg({ quality: 90 }).toBuffer();
  for (let w = 300; Math.abs(jpeg.length - 65536) > 4096 && w < 1600; w += 20) jpeg = await sharp(samplePhoto(3)).resize({ width: w }).jpeg({ quality: 90 }).toBuffer();
  const { body, contentType } = multipartBody(jpeg);
  const redis = await startTestRedis();
  const storage = mkdtempSync(join(tmpdir(), 'pe-bench-storage-'));
  const port = 20000 + Math.floor(Math.random() * 20000);
  const gateway = await serverProcess(['apps/gateway/src/main.ts'], {
    REDIS_URL: redis.url,
    PORT: String(port),
    STORAGE_DIR: storage,
    LOG_LEVEL: 'warn',
    // No worker drains this queue: lift the queue bound so the gateway accepts every submission, as the bare handler does.
    MAX_QUEUED_JOBS: '1000000000',
  }, `http://127.0.0.1:${port}`);
  const bare = await serverProcess(['bench/bare-server.ts'], { REDIS_URL: redis.url });
  // Warm both, then measure each in turn.
  await load(`${bare.url}/v1/jobs`, body, contentType, 2, connections);
  await load(`${gateway.url}/v1/jobs`, body, contentType, 2, connections);
  const b = await load(`${bare.url}/v1/jobs`, body, contentType, seconds, connections);
  const g = await load(`${gateway.url}/v1/jobs`, body, contentType, seconds, connections);
  const non2xx = g.non2xx + g.errors;
  if (non2xx > 0 || b.non2xx + b.errors > 0) console.error(`warning: non-2xx answers: gateway ${non2xx}, bare ${b.non2xx + b.errors}; the ratio is not comparable`);
  await bare.stop();
  await gateway.stop();
  await redis.close();
  rmSync(storage, { recursive: true, force: true });
  const s = `submission (64 KiB JPEG, ${connections} conns)`;
  return [
    { section: s, metric: 'bare queue.add handler', value: b.requests.average, unit: 'req/s', note: `p50 ${b.latency.p50} ms, p99 ${b.latency.p99} ms` },
    { section: s, metric: 'gateway POST /v1/jobs', value: g.requests.average, unit: 'req/s', note: `p50 ${g.latency.p50} ms, p99 ${g.latency.p99} ms, non-2xx ${non2xx}, body ${jpeg.length} B` },
    { section: s, metric: 'gateway / bare throughput', value: g.requests.average / b.requests.average, unit: 'ratio', goal: '>= 0.7' },
    { section: s, metric: 'gateway p99 latency', value: g.latency.p99, unit: 'ms', goal: '<= 25' },
    { section: s, metric: 'gateway p50 latency', value: g.latency.p50, unit: 'ms' },
  ];
}

export async function benchSpine(opts: { jobs: number; seconds: number; connections: number }): Promise<Row[]> {
  const rows: Row[] = [];
  const duty = await drainRun('sleep100', opts.jobs);
  rows.push({ section: 'engine duty cycle (100 ms/job, 1 engine)', metric: 'jobs/s achieved ÷ 10', value: duty.jobsPerSecond / 10, unit: 'ratio', goal: '>= 0.97', note: `${opts.jobs} jobs in ${duty.spanMs} ms` });
  const noop = await drainRun('noop', opts.jobs);
  rows.push({ section: 'per-job overhead (no-op engine)', metric: 'time per job', value: noop.perJobMs, unit: 'ms', note: `${noop.jobsPerSecond.toFixed(1)} jobs/s` });
  rows.push(...(await submissionRun(opts.seconds, opts.connections)));
  return rows;
}

