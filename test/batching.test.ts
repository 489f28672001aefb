import { join } from 'node:path';
import { Queue } from 'bullmq';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KEY_PREFIX, queueName, redisOptions } from '@photoenhance/queue';
import { REPO, startStack, submit, until, waitForStatus, type Stack } from './support/stack.js';

/**
 * Dynamic batching through the real worker app and engine processes: an engine costing a + b·n per request declares
 * batch in its ready; the same engine declaring nothing gets one job at a time (the control).
 */
const ENGINE = join(REPO, 'test/fixtures/engines/batch-engine.mjs');
const A_MS = 250;
const B_MS = 10;
const engine = (name: string, maxBatch: number, aMs = A_MS, delayMs = 50): Record<string, unknown> => ({
  name,
  command: [
    process.execPath,
    ENGINE,
    '--a-ms',
    String(aMs),
    '--b-ms',
    String(B_MS),
    '--max-batch',
    String(maxBatch),
    '--max-queue-delay-ms',
    String(delayMs),
  ],
});

let stack: Stack;
let good: Buffer;
let bad: Buffer;

beforeAll(async () => {
  stack = await startStack({
    gateway: { knownEngines: ['batched', 'single', 'long'] },
    engines: [engine('batched', 4), engine('single', 0), engine('long', 4, 3000, 300)],
  });
  good = await sharp({ create: { width: 32, height: 32, channels: 3, background: '#446688' } })
    .png()
    .toBuffer();
  // The fixture fails any PNG 13 px wide: a photo the engine cannot process.
  bad = await sharp({ create: { width: 13, height: 32, channels: 3, background: '#884466' } })
    .png()
    .toBuffer();
}, 60_000);

afterAll(async () => {
  await stack?.close();
}, 30_000);

async function submitTo(engineName: string, image: Buffer): Promise<string> {
  const res = await until(
    'the gateway to accept the job',
    async () => {
      const r = await submit(stack.gw.url, image, { engine: engineName, format: 'png' }, 'a.png', 'image/png');
      if (r.status === 503) {
        await r.body?.cancel();
        return undefined;
      }
      return r;
    },
    30_000,
    100,
  );
  expect(res.status).toBe(202);
  return ((await res.json()) as { id: string }).id;
}

interface View {
  status: string;
  attempts: number;
  error?: { code: string; message: string };
  result?: { meta?: { batchSize?: number } };
}

async function drain(engineName: string, n: number): Promise<{ spanMs: number; sizes: number[] }> {
  const q = new Queue(queueName(engineName), { connection: { ...redisOptions(stack.redis.url) }, prefix: KEY_PREFIX });
  try {
    // Warm the engine (start-up is not what is measured), then pause the queue, queue n jobs, and resume.
    await waitForStatus(stack.gw.url, await submitTo(engineName, good), ['completed']);
    await q.pause();
    const ids: string[] = [];
    for (let i = 0; i < n; i++) ids.push(await submitTo(engineName, good));
    await q.resume();
    const views = (await Promise.all(
      ids.map((id) => waitForStatus(stack.gw.url, id, ['completed', 'failed'], 60_000) as Promise<unknown>),
    )) as View[];
    for (const v of views) expect(v.status).toBe('completed');
    const jobs = await Promise.all(ids.map((id) => q.getJob(id)));
    const start = Math.min(...jobs.map((j) => j!.processedOn!));
    const end = Math.max(...jobs.map((j) => j!.finishedOn!));
    return { spanMs: end - start, sizes: views.map((v) => v.result?.meta?.batchSize ?? 0) };
  } finally {
    await q.close();
  }
}

describe('dynamic batching', () => {
  it('sends waiting jobs together to an engine that declares batches: several times the throughput of one at a time', async () => {
    const n = 16;
    const single = await drain('single', n);
    const batched = await drain('batched', n);
    console.log(
      `16 jobs, a=${A_MS} ms b=${B_MS} ms: one at a time ${single.spanMs} ms, batches of ≤4 ${batched.spanMs} ms (sizes ${batched.sizes.join(',')})`,
    );
    // The control never batched; the batching engine got full batches.
    expect(single.sizes.every((s) => s === 1)).toBe(true);
    expect(Math.max(...batched.sizes)).toBe(4);
    expect(batched.sizes.every((s) => s <= 4)).toBe(true);
    // Ideal: 16·260 = 4160 ms against 4·290 = 1160 ms (3.6×); a loaded machine gets a generous margin.
    expect(single.spanMs / batched.spanMs).toBeGreaterThan(2);
  }, 120_000);

  it('one bad photo in a batch fails only its own job', async () => {
    const q = new Queue(queueName('batched'), { connection: { ...redisOptions(stack.redis.url) }, prefix: KEY_PREFIX });
    try {
      await q.pause();
      const ids = [
        await submitTo('batched', good),
        await submitTo('batched', bad),
        await submitTo('batched', good),
        await submitTo('batched', good),
      ];
      await q.resume();
      const views = (await Promise.all(
        ids.map((id) => waitForStatus(stack.gw.url, id, ['completed', 'failed'], 60_000)),
      )) as unknown as View[];
      expect(views.map((v) => v.status)).toEqual(['completed', 'failed', 'completed', 'completed']);
      expect(views[1]!.error!.code).toBe('ENGINE_FAILED');
      expect(views[1]!.error!.message).toContain('13 px wide');
      expect(views[1]!.attempts).toBe(1); // not retryable: not run again
      // The bad photo went in the same request as the good ones, and did not take them down.
      expect(Math.max(...views.map((v) => v.result?.meta?.batchSize ?? 0))).toBe(4);
    } finally {
      await q.close();
    }
  }, 60_000);

  it('a cancel stops only its own job in a batch', async () => {
    const q = new Queue(queueName('long'), { connection: { ...redisOptions(stack.redis.url) }, prefix: KEY_PREFIX });
    try {
      // Warm the engine (its ready declares batches), then queue three and let them go out together.
      await waitForStatus(stack.gw.url, await submitTo('long', good), ['completed'], 30_000);
      await q.pause();
      const ids = [await submitTo('long', good), await submitTo('long', good), await submitTo('long', good)];
      await q.resume();
      // At the engine: it reported progress for each (the fixture does when a batch starts).
      await until(
        'the batch at the engine',
        async () => (await Promise.all(ids.map((id) => q.getJob(id)))).every((j) => Number(j?.progress) > 0),
        20_000,
        20,
      );
      const del = await fetch(`${stack.gw.url}/v1/jobs/${ids[1]}`, { method: 'DELETE' });
      expect(del.status).toBe(200);
      const views = (await Promise.all(
        ids.map((id) => waitForStatus(stack.gw.url, id, ['completed', 'failed', 'canceled'], 30_000)),
      )) as unknown as View[];
      expect(views.map((v) => v.status)).toEqual(['completed', 'canceled', 'completed']);
      // The canceled job shared a request with a completed one: all three together (3 + 3), or it and one other (2 + 1).
      expect([3, 6]).toContain((views[0]!.result?.meta?.batchSize ?? 0) + (views[2]!.result?.meta?.batchSize ?? 0));
      // The canceled job's attempt ended as a cancel, not as a failure to retry.
      await stack.worker.waitForLog((r) => r.jobId === ids[1] && String(r.reason).startsWith('JOB_CANCELED'), 10_000);
    } finally {
      await q.close();
    }
  }, 60_000);
});
