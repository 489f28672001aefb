import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestRedis } from './support/redis.js';
import { smallPhoto } from './support/images.js';
import { fixtureEngine, startGateway, startStack, submit, until, waitForStatus, type RunningGateway, type Stack } from './support/stack.js';

/** Gateway backpressure: bounded queue (503 + measured Retry-After), rate limits (429), overload (503), idempotency, priorities. */
let redis: TestRedis;
let gw: RunningGateway;
const LIMIT = 4;

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({
    gateway: {
      knownEngines: ['quick', 'one'],
      defaultEngine: 'quick',
      maxQueuedJobs: LIMIT,
      queueDepthCacheMs: 0,
      drainWindowMs: 60_000,
      holdingGraceMs: 200,
    },
    engines: [
      fixtureEngine('quick', 'sleep', 60, { poolSize: 2 }),
      // One at a time, slowly: floods outrun it even on a loaded machine.
      fixtureEngine('one', 'sleep', 250, { poolSize: 1 }),
    ],
  });
  ({ redis, gw } = stack);
});

afterAll(() => stack?.close());

async function problem(res: Response): Promise<Record<string, unknown>> {
  expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  return (await res.json()) as Record<string, unknown>;
}

describe('bounded queue', () => {
  it('a flood of 5× the limit from parallel clients gets 503 QUEUE_FULL with Retry-After; every accepted job completes', async () => {
    const photo = await smallPhoto('jpeg', 32);
    const accepted: string[] = [];
    const refused: Array<{ retryAfter: number; body: Record<string, unknown> }> = [];
    // Two rounds: the second one has a measured drain rate from the first.
    const queue = gw.app.jobs.queue('one');
    for (let round = 0; round < 2; round++) {
      // The queue is paused during the flood, so nothing drains while it lands, however slow this machine is.
      await queue.pause();
      const answers = await Promise.all(Array.from({ length: LIMIT * 5 }, () => submit(gw.url, photo, { scale: '1', engine: 'one' })));
      await queue.resume();
      // The bound holds for a burst: parallel submissions that pass the check together do not all get in.
      expect(answers.filter((r) => r.status === 202).length).toBeLessThanOrEqual(LIMIT);
      for (const res of answers) {
        if (res.status === 202) accepted.push(((await res.json()) as { id: string }).id);
        else {
          expect(res.status).toBe(503);
          const body = await problem(res);
          expect(body.code).toBe('QUEUE_FULL');
          refused.push({ retryAfter: Number(res.headers.get('retry-after')), body });
        }
      }
      // Drained means finished, not only taken: with prefetch a worker holds a job beyond the one it runs, so "nothing
      // waiting" can come before any job of the round has finished, and the next round would see no drain rate.
      for (const id of accepted) await waitForStatus(gw.url, id, ['completed', 'failed']);
      expect((await gw.app.queueBound.load()).waiting).toBe(0);
    }
    expect(refused.length).toBeGreaterThan(0);
    expect(accepted.length).toBeGreaterThanOrEqual(LIMIT);
    for (const r of refused) {
      expect(Number.isInteger(r.retryAfter)).toBe(true);
      expect(r.retryAfter).toBeGreaterThanOrEqual(1);
      expect(r.retryAfter).toBeLessThanOrEqual(300);
      expect(r.body.retryAfterSeconds).toBe(r.retryAfter);
      expect(r.body.limit).toBe(LIMIT);
    }
    // The second round's refusals carry a measured (non-zero) drain rate.
    expect(
      refused.some((r) => Number(r.body.drainPerSecond) > 0),
      JSON.stringify(refused.map((r) => r.body.drainPerSecond)),
    ).toBe(true);
    for (const id of accepted) expect((await waitForStatus(gw.url, id, ['completed', 'failed'])).status).toBe('completed');
  }, 120_000);

  it('Retry-After follows the drain rate, clamped to its bounds', () => {
    const a = gw.app.queueBound;
    expect(a.retryAfterSeconds({ waiting: 10, drainPerSecond: 2, at: 0 }, 10)).toBe(5);
    expect(a.retryAfterSeconds({ waiting: 10, drainPerSecond: 0.001, at: 0 }, 10)).toBe(300);
    expect(a.retryAfterSeconds({ waiting: 10, drainPerSecond: 1000, at: 0 }, 10)).toBe(1);
  });
});

describe('idempotency', () => {
  it('same key + same content → same job; different content → 422; keys are per client', async () => {
    const photo = await smallPhoto('jpeg', 40);
    const key = 'test-key-0001';
    const first = await submit(gw.url, photo, { scale: '1' }, 'p.jpg');
    expect(first.status).toBe(202);
    const post = (fields: Record<string, string>, data = photo, headers: Record<string, string> = {}): Promise<Response> => {
      const form = new FormData();
      for (const [k, v] of Object.entries(fields)) form.append(k, v);
      form.append('image', new Blob([data], { type: 'image/jpeg' }), 'p.jpg');
      return fetch(`${gw.url}/v1/jobs`, { method: 'POST', body: form, headers: { 'idempotency-key': key, ...headers } });
    };
    const a = await post({ scale: '1' });
    expect(a.status).toBe(202);
    const idA = ((await a.json()) as { id: string }).id;
    const b = await post({ scale: '1' });
    expect(b.status).toBe(202);
    expect(b.headers.get('idempotent-replayed')).toBe('true');
    expect(((await b.json()) as { id: string }).id).toBe(idA);
    const c = await post({ scale: '2' });
    expect(await problem(c)).toMatchObject({ status: 422, code: 'IDEMPOTENCY_KEY_REUSED' });
    const d = await post({ scale: '1' }, await smallPhoto('jpeg', 41));
    expect((await problem(d)).code).toBe('IDEMPOTENCY_KEY_REUSED');
    // A refused first attempt releases the key: a corrected retry may use it.
    const key2 = { 'idempotency-key': 'test-key-0002' };
    expect((await post({ scale: '3' }, photo, key2)).status).toBe(400);
    expect((await post({ scale: '1' }, photo, key2)).status).toBe(202);
    expect((await problem(await post({ scale: '1' }, photo, { 'idempotency-key': 'bad key with spaces' }))).code).toBe('INVALID_REQUEST');
    await waitForStatus(gw.url, idA, ['completed']);
  });
});

describe('priorities', () => {
  it('a high-priority job overtakes low-priority jobs queued before it', async () => {
    const photo = await smallPhoto('jpeg', 32);
    const blocker = ((await (await submit(gw.url, photo, { engine: 'one', scale: '1' })).json()) as { id: string }).id;
    await waitForStatus(gw.url, blocker, ['active']);
    // With PREFETCH the worker takes the next job for its busy engine the moment it is queued, and that job is promised
    // to the engine; priority orders the jobs still in the queue. So all three wait in the (paused) queue together.
    const queue = gw.app.jobs.queue('one');
    await queue.pause();
    const low1 = ((await (await submit(gw.url, photo, { engine: 'one', scale: '1', priority: 'low' })).json()) as { id: string }).id;
    const low2 = ((await (await submit(gw.url, photo, { engine: 'one', scale: '1', priority: 'low' })).json()) as { id: string }).id;
    const high = ((await (await submit(gw.url, photo, { engine: 'one', scale: '1', priority: 'high' })).json()) as { id: string }).id;
    await queue.resume();
    const views = await Promise.all([high, low1, low2].map((id) => waitForStatus(gw.url, id, ['completed'])));
    const started = views.map((v) => Date.parse(v.startedAt as string));
    expect(started[0]).toBeLessThan(started[1]!);
    expect(started[0]).toBeLessThan(started[2]!);
  });
});

describe('rate limits and overload', () => {
  it('over the per-client rate → 429 RATE_LIMITED with Retry-After; probes exempt; API keys get their own budget', async () => {
    const limited = await startGateway(
      redis.url,
      {
        knownEngines: ['quick'],
        defaultEngine: 'quick',
        rateLimitMax: 3,
        rateLimitWindowMs: 60_000,
        apiKeys: ['key-aaaaaaaa', 'key-bbbbbbbb'],
      },
      gw.storageDir,
    );
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 4; i++) statuses.push((await fetch(`${limited.url}/v1/engines`)).status);
      expect(statuses).toEqual([200, 200, 200, 429]);
      const res = await fetch(`${limited.url}/v1/engines`);
      const body = await problem(res);
      expect(body).toMatchObject({ status: 429, code: 'RATE_LIMITED' });
      expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
      for (let i = 0; i < 5; i++) expect((await fetch(`${limited.url}/healthz`)).status).toBe(200);
      // Another key has its own budget; an unknown key counts as its address.
      expect((await fetch(`${limited.url}/v1/engines`, { headers: { authorization: 'Bearer key-aaaaaaaa' } })).status).toBe(200);
      expect((await fetch(`${limited.url}/v1/engines`, { headers: { 'x-api-key': 'key-bbbbbbbb' } })).status).toBe(200);
      expect((await fetch(`${limited.url}/v1/engines`, { headers: { 'x-api-key': 'key-unknown1' } })).status).toBe(429);
    } finally {
      await limited.close();
    }
  });

  it('under pressure (heap over its ceiling) → 503 OVERLOADED with Retry-After; /healthz still answers', async () => {
    const pressed = await startGateway(redis.url, { knownEngines: ['quick'], defaultEngine: 'quick', maxHeapUsedBytes: 1 }, gw.storageDir);
    try {
      const res = await until(
        'OVERLOADED',
        async () => {
          const r = await submit(pressed.url, await smallPhoto('jpeg', 16));
          return r.status === 503 ? r : undefined;
        },
        10_000,
        100,
      );
      expect(await problem(res)).toMatchObject({ code: 'OVERLOADED' });
      expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
      expect((await fetch(`${pressed.url}/healthz`)).status).toBe(200);
    } finally {
      await pressed.close();
    }
  });

  it('every worker host holding for memory past the grace → 503 WORKERS_HOLDING; admitting again → accepted', async () => {
    const set = (body: Record<string, number>): Promise<Response> =>
      fetch(`${gw.url}/v1/system/hosts/*/admission`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    const hostState = async (): Promise<string> =>
      ((await (await fetch(`${gw.url}/v1/system`)).json()) as { hosts: Array<{ admission: { state: string } }> }).hosts[0]?.admission
        .state ?? 'none';
    expect((await set({ minAvailableBytes: 2 ** 50 })).status).toBe(202);
    try {
      await until('worker holding', async () => (await hostState()) === 'holding', 20_000, 100);
      const res = await until(
        'WORKERS_HOLDING',
        async () => {
          const r = await submit(gw.url, await smallPhoto('jpeg', 16));
          return r.status === 503 ? r : undefined;
        },
        10_000,
        100,
      );
      expect(await problem(res)).toMatchObject({ code: 'WORKERS_HOLDING' });
      expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
    } finally {
      await set({ minAvailableBytes: 0 });
    }
    await until('worker admitting', async () => (await hostState()) === 'admitting', 20_000, 100);
    const ok = await until(
      'accepted again',
      async () => {
        const r = await submit(gw.url, await smallPhoto('jpeg', 16), { scale: '1' });
        return r.status === 202 ? r : undefined;
      },
      10_000,
      200,
    );
    const { id } = (await ok.json()) as { id: string };
    expect((await waitForStatus(gw.url, id, ['completed'])).status).toBe('completed');
  });
});
