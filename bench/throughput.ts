/**
 * `npm run bench -- throughput`: how busy the engine is kept on the full stack (gateway running, jobs submitted over
 * HTTP while the queue is paused, then resumed), with and without prefetch; and dynamic batching against one job at a
 * time with the a + b·n fixture. Figures come from the jobs' own records: engine time (result.timings.runMs, measured
 * by the worker around each engine request) over the span from the first job taken to the last one finished.
 */
import { join } from 'node:path';
import { Queue } from 'bullmq';
import sharp from 'sharp';
import type { JobResult } from '@photoenhance/contracts';
import { KEY_PREFIX, queueName, redisOptions } from '@photoenhance/queue';
import { FIXTURE_ENGINE, REPO, startStack, submit, until } from '../test/support/stack.js';
import type { Row } from './spine.js';

const BATCH_ENGINE = join(REPO, 'test/fixtures/engines/batch-engine.mjs');

interface Drained {
  jobs: number;
  spanMs: number;
  /** Σ the engine's own time per job (done.timings.engineMs: from reading the request to writing the answer). */
  busyMs: number;
  /** Σ engine request → answer as the worker saw it (includes the worker's own event-loop delays). */
  runMs: number;
  /** Per job: how long an idle engine was held back to fill its batch (the latency batching adds). */
  batchWaitMs: number[];
  /** Per job: time at the engine pool before it was sent (includes waiting for a busy engine). */
  poolWaitMs: number[];
  batchSizes: number[];
}

/** One stack, one engine: queue `n` jobs over HTTP while the queue is paused, resume, wait for all, read the records. */
async function drain(engine: Record<string, unknown>, n: number, workerEnv: Record<string, string>): Promise<Drained> {
  const name = engine.name as string;
  const stack = await startStack({ gateway: { knownEngines: [name], maxQueuedJobs: 1_000_000 }, engines: [engine], workerEnv });
  const q = new Queue<unknown, JobResult>(queueName(name), { connection: { ...redisOptions(stack.redis.url) }, prefix: KEY_PREFIX });
  try {
    const tiny = await sharp({ create: { width: 16, height: 16, channels: 3, background: '#888' } })
      .png()
      .toBuffer();
    const send = async (): Promise<string> => {
      const r = await until(
        'the gateway to accept the job',
        async () => {
          const res = await submit(stack.gw.url, tiny, { engine: name, format: 'png' }, 'a.png', 'image/png');
          if (res.status === 503) {
            await res.body?.cancel();
            return undefined;
          }
          return res;
        },
        30_000,
        100,
      );
      if (r.status !== 202) throw new Error(`submission answered ${r.status}: ${await r.text()}`);
      return ((await r.json()) as { id: string }).id;
    };
    // One job first, so the engine is started (start-up is not what is measured).
    const warm = await send();
    await until('the warm-up job', async () => (await q.getJobState(warm)) === 'completed', 60_000, 50);
    await q.pause();
    const ids: string[] = [];
    for (let i = 0; i < n; i++) ids.push(await send());
    await q.resume();
    await until('all jobs finished', async () => (await q.getCompletedCount()) + (await q.getFailedCount()) >= n + 1, 600_000, 100);
    const jobs = (await Promise.all(ids.map((id) => q.getJob(id)))).filter((j) => j?.finishedOn && j.returnvalue);
    const start = Math.min(...jobs.map((j) => j!.processedOn!));
    const end = Math.max(...jobs.map((j) => j!.finishedOn!));
    return {
      jobs: jobs.length,
      spanMs: end - start,
      busyMs: jobs.reduce((s, j) => s + (j!.returnvalue.timings?.engineMs ?? 0), 0),
      runMs: jobs.reduce((s, j) => s + (j!.returnvalue.timings?.runMs ?? 0), 0),
      batchWaitMs: jobs.map((j) => j!.returnvalue.timings?.batchWaitMs ?? 0),
      poolWaitMs: jobs.map((j) => j!.returnvalue.timings?.waitMs ?? 0),
      batchSizes: jobs.map((j) => Number((j!.returnvalue.meta as { batchSize?: number } | undefined)?.batchSize ?? 1)),
    };
  } finally {
    await q.close();
    await stack.close();
  }
}

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] ?? 0;
};

/** THROUGHPUT_PARTS=duty,noop,batching (default all) runs only some parts, e.g. to compare two commits quickly. */
const parts = new Set((process.env.THROUGHPUT_PARTS ?? 'duty,noop,batching').split(',').map((s) => s.trim()));

export async function benchThroughput(opts: { jobs: number; batchJobs: number }): Promise<Row[]> {
  const rows: Row[] = [];
  if (parts.has('noop')) {
    // Per-job overhead: an engine that answers at once, so the span per job is what the stack itself costs.
    const engine = { name: 'noop', command: [process.execPath, FIXTURE_ENGINE, '--mode', 'noop'] };
    for (const prefetch of ['0', '1']) {
      const d = await drain(engine, opts.jobs, { PREFETCH: prefetch });
      rows.push({
        section: 'per-job overhead, full stack (no-op engine, 1 engine)',
        metric: `span per job, PREFETCH=${prefetch}`,
        value: d.spanMs / d.jobs,
        unit: 'ms',
        goal: '<= 0.5',
        note: `${d.jobs} jobs in ${d.spanMs} ms (${((d.jobs / d.spanMs) * 1000).toFixed(0)} jobs/s); engine request→answer as the worker saw it ${(d.runMs / d.jobs).toFixed(2)} ms/job`,
      });
    }
  }
  for (const ms of parts.has('duty') ? [100, 10] : []) {
    const engine = { name: `sleep${ms}`, command: [process.execPath, FIXTURE_ENGINE, '--mode', 'sleep', '--delay-ms', String(ms)] };
    for (const prefetch of ['0', '1']) {
      const d = await drain(engine, opts.jobs, { PREFETCH: prefetch });
      const duty = d.busyMs / d.spanMs;
      rows.push({
        section: `engine duty cycle, full stack (${ms} ms/job, 1 engine)`,
        metric: `engine busy / span, PREFETCH=${prefetch}`,
        value: duty,
        unit: 'ratio',
        goal: ms === 100 ? '>= 0.99' : '>= 0.95',
        note: `${d.jobs} jobs queued over HTTP (gateway running) in ${d.spanMs} ms; ${((d.spanMs - d.busyMs) / d.jobs).toFixed(2)} ms idle per job; engine's own time ${(d.busyMs / d.jobs).toFixed(1)} ms/job; request→answer as the worker saw it ${(d.runMs / d.spanMs).toFixed(3)} of the span`,
      });
    }
  }
  if (!parts.has('batching')) return rows;
  const a = 8;
  const b = 2;
  const batchEngine = (maxBatch: number): Record<string, unknown> => ({
    name: maxBatch > 1 ? 'batched' : 'single',
    command: [
      process.execPath,
      BATCH_ENGINE,
      '--a-ms',
      String(a),
      '--b-ms',
      String(b),
      '--max-batch',
      String(maxBatch),
      '--max-queue-delay-ms',
      '5',
    ],
  });
  const single = await drain(batchEngine(0), opts.batchJobs, {});
  const batched = await drain(batchEngine(8), opts.batchJobs, {});
  const s = `dynamic batching (a + b·n fixture, a=${a} ms, b=${b} ms, ${opts.batchJobs} jobs)`;
  const jps = (d: Drained): number => (d.jobs / d.spanMs) * 1000;
  rows.push(
    { section: s, metric: 'one job at a time', value: jps(single), unit: 'jobs/s', note: `span ${single.spanMs} ms` },
    {
      section: s,
      metric: 'maxBatch 8, maxQueueDelayMs 5',
      value: jps(batched),
      unit: 'jobs/s',
      note: `span ${batched.spanMs} ms; mean batch ${(batched.batchSizes.reduce((x, y) => x + y, 0) / batched.batchSizes.length).toFixed(2)}`,
    },
    { section: s, metric: 'batched / one at a time', value: jps(batched) / jps(single), unit: 'ratio', goal: '>= 3' },
    {
      section: s,
      metric: 'p95 added latency (idle engine held back to fill a batch)',
      value: pct(batched.batchWaitMs, 95),
      unit: 'ms',
      goal: '<= 5 (maxQueueDelayMs)',
      note: `p50 ${pct(batched.batchWaitMs, 50)} ms, max ${Math.max(...batched.batchWaitMs)} ms; time at the pool incl. waiting for the busy engine: p95 ${pct(batched.poolWaitMs, 95)} ms`,
    },
  );
  return rows;
}
