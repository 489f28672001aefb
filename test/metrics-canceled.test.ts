import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestRedis, type TestRedis } from './support/redis.js';
import { startGateway, submit, until, type RunningGateway } from './support/stack.js';
import { smallPhoto } from './support/images.js';

/**
 * Canceled is an outcome of its own in /metrics: a job canceled while queued was not counted at all (BullMQ removes it,
 * and only completed/failed events were counted). Real gateway and Redis; no worker, so the job stays queued.
 */

let redis: TestRedis;
let gw: RunningGateway;
beforeAll(async () => {
  redis = await startTestRedis();
  gw = await startGateway(redis.url, { knownEngines: ['parked'], defaultEngine: 'parked', maxEventLoopDelayMs: 0, dashboardSampleMs: 200 });
}, 60_000);
afterAll(async () => {
  await gw?.close();
  await redis?.close();
});

const LINE = 'pe_jobs_finished_total{engine="parked",outcome="canceled",code="JOB_CANCELED"}';

describe('/metrics', () => {
  it('counts a job canceled while queued, once, as canceled (not failed)', async () => {
    const res = await submit(gw.url, await smallPhoto('jpeg', 64));
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    const del = await fetch(`${gw.url}/v1/jobs/${id}`, { method: 'DELETE' });
    expect(del.status).toBe(200);
    const text = await until(
      'the canceled job in /metrics',
      async () => {
        const t = await (await fetch(`${gw.url}/metrics`)).text();
        return t.includes(LINE) ? t : undefined;
      },
      20_000,
      100,
    );
    expect(text).toContain(`${LINE} 1`);
    expect(text).not.toMatch(/pe_jobs_finished_total\{engine="parked",outcome="failed"/);
    // Canceling again is idempotent and counts nothing more.
    await fetch(`${gw.url}/v1/jobs/${id}`, { method: 'DELETE' });
    const again = await (await fetch(`${gw.url}/metrics`)).text();
    expect(again).toContain(`${LINE} 1`);
    // Nothing of it is left in the queue counters (removed while queued), and the dashboard's KPIs call it canceled.
    expect(again).toContain('pe_queue_jobs{engine="parked",state="failed"} 0');
    expect(again).toContain('pe_queue_jobs{engine="parked",state="canceled"} 0');
    const ov = (await (await fetch(`${gw.url}/dashboard/api/overview`)).json()) as {
      totals: { queued: number; failed: number; canceled: number };
      stats: { failed: number; canceled: number; finished: number };
    };
    expect(ov.totals).toMatchObject({ queued: 0, failed: 0, canceled: 0 });
    expect(ov.stats).toMatchObject({ failed: 0, canceled: 1, finished: 1 });
  });
});
