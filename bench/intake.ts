/**
 * Intake: the real gateway (`POST /v1/jobs`) against a minimal gateway (bench/minimal-gateway.ts: Fastify +
 * @fastify/multipart streaming the upload to a file, then queue.add) on the same Redis, side by side in one run, each
 * in its own process, the load (autocannon, 64 connections) from this one. Two uploads: a 90 KB JPEG and a 0.5 MB
 * photo. The gateway runs with UPLOAD_CHECK=structure (the default) and, for reference, decode. Then the steps the
 * gateway adds on the request path, each timed alone in this process.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { Queue } from 'bullmq';
import sharp from 'sharp';
import { checkFileStructure } from '@photoenhance/imaging';
import { JobRecords, KEY_PREFIX, bullJobOptions, enqueueWithRecord, queueName } from '@photoenhance/queue';
import { inspectImage } from '../apps/gateway/src/upload.js';
import { startTestRedis } from '../test/support/redis.js';
import { REPO, until } from '../test/support/stack.js';
import { samplePhoto } from '../test/support/images.js';
import type { Row } from './spine.js';

function multipartBody(file: Buffer): { body: Buffer; contentType: string } {
  const boundary = '----pebench7f3a';
  const head = Buffer.from(
    `--${boundary}\r\nContent-Disposition: form-data; name="scale"\r\n\r\n2\r\n--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="bench.jpg"\r\nContent-Type: image/jpeg\r\n\r\n`,
  );
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  return { body: Buffer.concat([head, file, tail]), contentType: `multipart/form-data; boundary=${boundary}` };
}

async function load(url: string, body: Buffer, contentType: string, seconds: number, connections: number): Promise<autocannon.Result> {
  return autocannon({ url, method: 'POST', body, headers: { 'content-type': contentType }, connections, duration: seconds, pipelining: 1 });
}

/** Start a server process and wait for its URL: the minimal gateway prints it; the gateway answers /readyz. */
async function serverProcess(
  args: string[],
  env: Record<string, string>,
  url?: string,
): Promise<{ url: string; stop: () => Promise<void> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', ...args], {
    cwd: REPO,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let printed = '';
  child.stdout!.on('data', (d: Buffer) => (printed += d.toString()));
  const found = await until(
    'server up',
    async () => {
      if (url) return (await fetch(`${url}/readyz`).catch(() => undefined))?.status === 200 ? url : undefined;
      return /^http:\/\/\S+/m.exec(printed)?.[0];
    },
    60_000,
    100,
  );
  return {
    url: found,
    stop: () =>
      new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

/** A JPEG of the sample photo whose size is near `bytes`, by width (and quality for the larger one). */
async function jpegNear(bytes: number, quality: number): Promise<Buffer> {
  let lo = 200;
  let hi = 1920;
  let best = await sharp(samplePhoto(3)).jpeg({ quality }).toBuffer();
  while (hi - lo > 8) {
    const w = Math.round((lo + hi) / 2);
    const b = await sharp(samplePhoto(3)).resize({ width: w }).jpeg({ quality }).toBuffer();
    if (Math.abs(b.length - bytes) < Math.abs(best.length - bytes)) best = b;
    if (b.length < bytes) lo = w;
    else hi = w;
  }
  return best;
}

/** Mean time of `fn` over `n` sequential calls, after a few warm-up calls. */
async function timeEach(n: number, fn: (i: number) => Promise<unknown>): Promise<number> {
  for (let i = 0; i < 5; i++) await fn(-1 - i);
  const t = performance.now();
  for (let i = 0; i < n; i++) await fn(i);
  return (performance.now() - t) / n;
}

const kb = (n: number): string => `${(n / 1024).toFixed(0)} KiB`;

export async function benchIntake(opts: { seconds: number; connections: number; quick?: boolean }): Promise<Row[]> {
  const files = [
    { label: '90 KB JPEG', data: await jpegNear(90_000, 90) },
    { label: '0.5 MB photo', data: await jpegNear(512 * 1024, 97) },
  ];
  const redis = await startTestRedis();
  const storage = mkdtempSync(join(tmpdir(), 'pe-bench-intake-'));
  const port = 20000 + Math.floor(Math.random() * 20000);
  const gatewayEnv = (check: string, p: number): Record<string, string> => ({
    REDIS_URL: redis.url,
    PORT: String(p),
    STORAGE_DIR: join(storage, check),
    LOG_LEVEL: 'warn',
    UPLOAD_CHECK: check,
    // No worker drains this queue: lift the queue bound so the gateway accepts every submission, as the minimal one does.
    MAX_QUEUED_JOBS: '1000000000',
    // The minimal gateway has no self-protection: a gateway answering 503 OVERLOADED on a loaded box would look faster.
    MAX_EVENT_LOOP_DELAY_MS: '0',
    // No worker runs here: accept the jobs to wait (202), as the minimal gateway does, instead of 503 NO_WORKER_FOR_ENGINE.
    ACCEPT_WITHOUT_WORKER: 'true',
  });
  const gateway = await serverProcess(['apps/gateway/src/main.ts'], gatewayEnv('structure', port), `http://127.0.0.1:${port}`);
  const decode = await serverProcess(['apps/gateway/src/main.ts'], gatewayEnv('decode', port + 1), `http://127.0.0.1:${port + 1}`);
  const minimal = await serverProcess(['bench/minimal-gateway.ts'], { REDIS_URL: redis.url, STORAGE_DIR: join(storage, 'minimal') });
  const rows: Row[] = [];
  const conns = opts.connections;
  try {
    for (const file of files) {
      const { body, contentType } = multipartBody(file.data);
      const run = (url: string, seconds: number): Promise<autocannon.Result> => load(`${url}/v1/jobs`, body, contentType, seconds, conns);
      // Warm each (JIT, connection pools, file-system caches), then measure each in turn.
      for (const s of [minimal, gateway, decode]) await run(s.url, 2);
      const m = await run(minimal.url, opts.seconds);
      const g = await run(gateway.url, opts.seconds);
      const d = await run(decode.url, opts.seconds);
      const bad = (r: autocannon.Result): number => r.non2xx + r.errors;
      if (bad(m) + bad(g) + bad(d) > 0)
        console.error(`warning: non-2xx answers (minimal ${bad(m)}, gateway ${bad(g)}, decode ${bad(d)}); the ratios are not comparable`);
      const s = `intake (${file.label}, ${kb(file.data.length)}, ${conns} conns)`;
      const lat = (r: autocannon.Result): string => `p50 ${r.latency.p50} ms, p99 ${r.latency.p99} ms, non-2xx ${bad(r)}`;
      rows.push(
        { section: s, metric: 'minimal gateway (multipart to file + queue.add)', value: m.requests.average, unit: 'req/s', note: lat(m) },
        { section: s, metric: 'gateway POST /v1/jobs, UPLOAD_CHECK=structure', value: g.requests.average, unit: 'req/s', note: lat(g) },
        {
          section: s,
          metric: 'gateway / minimal throughput',
          value: g.requests.average / m.requests.average,
          unit: 'ratio',
          goal: '>= 0.5',
        },
        {
          section: s,
          metric: 'gateway / minimal p99 latency',
          value: g.latency.p99 / Math.max(1, m.latency.p99),
          unit: 'ratio',
          goal: '<= 2',
        },
        {
          section: s,
          metric: 'gateway, UPLOAD_CHECK=decode (reference)',
          value: d.requests.average,
          unit: 'req/s',
          note: `${(d.requests.average / m.requests.average).toFixed(2)}× minimal; ${lat(d)}`,
        },
      );
    }
  } finally {
    await minimal.stop();
    await decode.stop();
    await gateway.stop();
  }

  // What the gateway adds on the request path, step by step, timed alone here (no load).
  const n = opts.quick ? 50 : 200;
  const steps = 'intake steps (timed alone, sequential)';
  for (const file of files) {
    const path = join(storage, `step-${file.data.length}.jpg`);
    writeFileSync(path, file.data);
    const limits = { maxPixels: 40_000_000, scale: 2, format: 'jpeg' as const };
    const structure = await timeEach(n, () => checkFileStructure(path, 'jpeg'));
    const decoded = await timeEach(n, () => inspectImage(path, { ...limits, check: 'decode' }));
    rows.push(
      {
        section: steps,
        metric: `structural check, ${file.label}`,
        value: structure,
        unit: 'ms',
        note: 'open, read, marker walk to EOI, close',
      },
      {
        section: steps,
        metric: `decode check, ${file.label} (UPLOAD_CHECK=decode)`,
        value: decoded,
        unit: 'ms',
        note: 'sharp header + shrink-on-load decode',
      },
    );
  }
  const client = redis.client();
  const q = new Queue(queueName('steps'), { connection: client, prefix: KEY_PREFIX });
  const records = new JobRecords(client, 3600);
  const policy = { attempts: 3, backoffMs: 1000, ttlSeconds: 3600 };
  const one = await timeEach(n, (i) => {
    const id = `j_one${i}`;
    return enqueueWithRecord(q, records, {
      id,
      engine: 'steps',
      createdAt: Date.now(),
      name: 'enhance',
      data: { id },
      opts: bullJobOptions(id, { priority: 'normal' } as never, policy),
    });
  });
  const two = await timeEach(n, async (i) => {
    const id = `j_two${i}`;
    await records.create(id, 'steps', Date.now());
    await q.add('enhance', { id }, bullJobOptions(id, { priority: 'normal' } as never, policy));
  });
  rows.push(
    { section: steps, metric: 'record + queue.add in one MULTI (enqueueWithRecord)', value: one, unit: 'ms' },
    { section: steps, metric: 'record, then queue.add (before: two round trips)', value: two, unit: 'ms' },
  );
  await q.close();
  client.disconnect();
  await redis.close();
  rmSync(storage, { recursive: true, force: true });
  return rows;
}
