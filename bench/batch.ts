import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import sharp from 'sharp';
import { KEY_PREFIX, queueName, redisOptions } from '@photoenhance/queue';
import { GatewayConfigSchema, type GatewayConfig } from '../apps/gateway/src/config.js';
import { startTestRedis } from '../test/support/redis.js';
import { REPO, startGateway, startWorker, submit, until } from '../test/support/stack.js';
import type { Row } from './spine.js';

/**
 * The batch CLI against what the workers can do, on one Redis and one worker (fixture engine, `sleep` mode: a fixed
 * engine time per job, so the CPUs the CLI and gateway use do not slow the engines down):
 * 1. raw: the same number of jobs posted straight to the gateway (16 at a time, far faster than the engines drain them);
 * 2. CLI: `photoenhance batch` over as many photos, through the same gateway;
 * 3. queue limit: the CLI through a second gateway on the same queues with a low MAX_QUEUED_JOBS (503 QUEUE_FULL),
 *    its drain-rate estimate already warm from runs 1 and 2 (a busy service, not a cold start).
 * Throughput = jobs ÷ (first job started → last job finished), from BullMQ's own timestamps.
 */
const fixture = join(REPO, 'test/fixtures/engines/fixture-engine.mjs');
const BIN = join(REPO, 'apps/cli/bin/photoenhance.js');
const ENGINE = 'benchbatch';
const DELAY_MS = 100;
const POOL = 4;
const QUEUE_LIMIT = 20;

interface CliSummary {
  done: number;
  failed: unknown[];
  submitted: number;
  elapsedMs: number;
  busy: { total: number; byCode: Record<string, number> };
  window: {
    decreases: number;
    pausedMs: number;
    min: number;
    maxSeen: number;
    final: number;
    trace: Array<{ t: number; size: number; event: string }>;
  };
}

export async function benchBatch(opts: { jobs?: number } = {}): Promise<Row[]> {
  const n = opts.jobs ?? (process.env.BENCH_QUICK === '1' ? 120 : 400);
  const work = mkdtempSync(join(tmpdir(), 'pe-bench-batch-'));
  const redis = await startTestRedis();
  const storage = join(work, 'storage');
  mkdirSync(storage);
  const base: Partial<GatewayConfig> = { knownEngines: [ENGINE], defaultEngine: ENGINE, logLevel: 'warn' };
  const hasLimit = 'maxQueuedJobs' in GatewayConfigSchema.properties;
  const open = await startGateway(
    redis.url,
    { ...base, ...(hasLimit ? ({ maxQueuedJobs: 100_000 } as Partial<GatewayConfig>) : {}) },
    storage,
  );
  const limited = hasLimit
    ? await startGateway(redis.url, { ...base, maxQueuedJobs: QUEUE_LIMIT } as Partial<GatewayConfig>, storage)
    : undefined;
  const cfg = join(work, 'worker.json');
  writeFileSync(
    cfg,
    JSON.stringify({
      engines: [{ name: ENGINE, command: [process.execPath, fixture, '--mode', 'sleep', '--delay-ms', String(DELAY_MS)], poolSize: POOL }],
    }),
  );
  const worker = await startWorker({
    REDIS_URL: redis.url,
    STORAGE_DIR: storage,
    WORKER_CONFIG: cfg,
    LOG_LEVEL: 'warn',
    HEARTBEAT_MS: '1000',
  });
  const queue = new Queue(queueName(ENGINE), { connection: { ...redisOptions(redis.url) }, prefix: KEY_PREFIX });
  const rows: Row[] = [];
  const section = `batch CLI (${n} photos; fixture sleep ${DELAY_MS} ms, pool ${POOL})`;
  try {
    const tiny = await sharp({ create: { width: 16, height: 16, channels: 3, background: '#777' } })
      .jpeg()
      .toBuffer();
    // Warm-up: every engine process started, so no run pays for start-up.
    await postAll(open.url, tiny, POOL * 4);
    await until('warm-up jobs finished', async () => (await queue.getCompletedCount()) >= POOL * 4, 120_000, 100);

    const rawIds = await postAll(open.url, tiny, n);
    const raw = await span(queue, rawIds);
    rows.push({
      section,
      metric: 'raw: jobs posted directly',
      value: raw.perSecond,
      unit: 'jobs/s',
      note: `ideal ${((POOL * 1000) / DELAY_MS).toFixed(0)} jobs/s; ${n} jobs in ${raw.ms} ms`,
    });

    const src = join(work, 'photos');
    await makePhotos(src, n);
    const cli = await runBatch(src, join(work, 'out-open'), open.url);
    const cliSpan = await span(queue, cli.ids);
    rows.push({
      section,
      metric: 'CLI: jobs/s while the engines worked',
      value: cliSpan.perSecond,
      unit: 'jobs/s',
      note: `${cli.summary.done} done, ${cli.summary.failed.length} failed; window up to ${cli.summary.window.maxSeen}`,
    });
    rows.push({ section, metric: 'CLI ÷ raw throughput', value: cliSpan.perSecond / raw.perSecond, unit: 'ratio', goal: '>= 0.95' });
    rows.push({
      section,
      metric: 'CLI end to end (process start → exit)',
      value: (n / cli.wallMs) * 1000,
      unit: 'photos/s',
      note: `${cli.wallMs} ms incl. start-up (~1 s), walking, uploads and the last downloads`,
    });

    if (!limited) {
      rows.push({
        section: `${section}, queue limit`,
        metric: 'not measured',
        value: 0,
        unit: '',
        note: 'this gateway has no maxQueuedJobs setting (MAX_QUEUED_JOBS) yet',
      });
    } else {
      const lim = await runBatch(src, join(work, 'out-limited'), limited.url);
      const limSpan = await span(queue, lim.ids);
      const s = lim.summary;
      const w = s.window;
      const firstDecrease = w.trace.find((t) => t.event === 'decrease')?.t;
      const half = s.elapsedMs / 2;
      const late = w.trace.filter((t) => t.t >= half);
      const lateSizes = late.map((t) => t.size);
      const ls = `${section}, queue limit ${QUEUE_LIMIT}`;
      rows.push({
        section: ls,
        metric: 'CLI ÷ raw throughput',
        value: limSpan.perSecond / raw.perSecond,
        unit: 'ratio',
        note: `${limSpan.perSecond.toFixed(1)} jobs/s; ${s.done} done, ${s.failed.length} failed`,
      });
      rows.push({
        section: ls,
        metric: '503 answers',
        value: s.busy.total,
        unit: 'count',
        note: `${((s.busy.total / n) * 100).toFixed(1)} per 100 photos; ${JSON.stringify(s.busy.byCode)}`,
      });
      rows.push({
        section: ls,
        metric: 'first window decrease after',
        value: (firstDecrease ?? 0) / 1000,
        unit: 's',
        note: firstDecrease === undefined ? 'never hit the limit' : `window decreases ${w.decreases}`,
      });
      rows.push({
        section: ls,
        metric: 'paused by Retry-After',
        value: w.pausedMs / 1000,
        unit: 's',
        note: `of ${(s.elapsedMs / 1000).toFixed(1)} s run`,
      });
      rows.push({
        section: ls,
        metric: 'window, second half of the run',
        value: lateSizes.length ? lateSizes.reduce((a, b) => a + b, 0) / lateSizes.length : w.final,
        unit: 'jobs',
        note: `min ${lateSizes.length ? Math.min(...lateSizes) : w.final}, max ${lateSizes.length ? Math.max(...lateSizes) : w.final}, final ${w.final}; the gateway holds ${QUEUE_LIMIT} waiting + ${POOL} running (+ finished ones not yet polled)`,
      });
    }
  } finally {
    await queue.close();
    await worker.stop();
    await limited?.close();
    await open.close();
    await redis.close();
    rmSync(work, { recursive: true, force: true });
  }
  return rows;
}

async function postAll(url: string, file: Buffer, count: number): Promise<string[]> {
  const ids: string[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < count) {
        next++;
        const res = await submit(url, file, { scale: '1' });
        if (res.status !== 202) throw new Error(`raw submission answered ${res.status}: ${await res.text()}`);
        ids.push(((await res.json()) as { id: string }).id);
      }
    }),
  );
  return ids;
}

async function makePhotos(dir: string, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const sub = join(dir, `d${i % 8}`);
    mkdirSync(sub, { recursive: true });
    await sharp({ create: { width: 16, height: 16, channels: 3, background: { r: i % 256, g: 80, b: 160 } } })
      .jpeg()
      .toFile(join(sub, `p${i}.jpg`));
  }
}

async function runBatch(src: string, out: string, url: string): Promise<{ summary: CliSummary; ids: string[]; wallMs: number }> {
  const t0 = Date.now();
  const child = spawn(process.execPath, [BIN, 'batch', src, '--out', out, '--url', url, '--scale', '1', '--json', '--quiet'], {
    cwd: REPO,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((r) => child.once('close', (c) => r(c)));
  const wallMs = Date.now() - t0;
  if (code !== 0) throw new Error(`photoenhance batch exited ${code}:\n${stderr.slice(-2000)}`);
  const summary = JSON.parse(stdout) as CliSummary;
  const ids = new Set<string>();
  for (const line of readFileSync(join(out, '.photoenhance-batch.jsonl'), 'utf8').split('\n')) {
    const id = line ? (JSON.parse(line) as { jobId?: string }).jobId : undefined;
    if (id) ids.add(id);
  }
  return { summary, ids: [...ids], wallMs };
}

/** First job started → last job finished, over these jobs. */
async function span(queue: Queue, ids: string[]): Promise<{ ms: number; perSecond: number }> {
  await until(
    `${ids.length} jobs finished`,
    async () => {
      for (const id of ids) {
        const j = await queue.getJob(id);
        if (!j?.finishedOn) return false;
      }
      return true;
    },
    600_000,
    250,
  );
  let start = Infinity;
  let end = 0;
  for (const id of ids) {
    const j = await queue.getJob(id);
    start = Math.min(start, j?.processedOn ?? Infinity);
    end = Math.max(end, j?.finishedOn ?? 0);
  }
  const ms = end - start;
  return { ms, perSecond: (ids.length / ms) * 1000 };
}
