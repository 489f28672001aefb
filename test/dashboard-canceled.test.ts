import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixtureEngine, startStack, submit, until, waitForStatus, type Stack } from './support/stack.js';
import { smallPhoto } from './support/images.js';

/**
 * A job canceled while it runs is `canceled` in the API; the dashboard's job list called it failed (it sits in BullMQ's
 * failed set) and /metrics counted it as failed. Real gateway, real worker running a slow fixture engine.
 */

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({
    gateway: { knownEngines: ['slow'], defaultEngine: 'slow', maxEventLoopDelayMs: 0, jobAttempts: 1, dashboardSampleMs: 200 },
    engines: [fixtureEngine('slow', 'sleep', 30_000)],
  });
}, 120_000);
afterAll(async () => stack?.close(), 60_000);

describe('a job canceled while running', () => {
  it('is canceled in the dashboard list and in /metrics, never failed', async () => {
    const res = await submit(stack.gw.url, await smallPhoto('jpeg', 64));
    const { id } = (await res.json()) as { id: string };
    await waitForStatus(stack.gw.url, id, ['active']);
    expect((await fetch(`${stack.gw.url}/v1/jobs/${id}`, { method: 'DELETE' })).status).toBe(200);
    const row = await until('the job in the dashboard list, finished', async () => {
      const page = (await (await fetch(`${stack.gw.url}/dashboard/api/jobs?state=all&pageSize=50`)).json()) as { jobs: Array<{ id: string; status: string }> };
      const r = page.jobs.find((j) => j.id === id);
      return r && r.status !== 'active' ? r : undefined;
    }, 30_000, 100);
    expect(row.status).toBe('canceled');
    const metrics = await until('the canceled job in /metrics', async () => {
      const t = await (await fetch(`${stack.gw.url}/metrics`)).text();
      return t.includes('outcome="canceled"') ? t : undefined;
    }, 20_000, 100);
    expect(metrics).toContain('pe_jobs_finished_total{engine="slow",outcome="canceled",code="JOB_CANCELED"} 1');
    expect(metrics).not.toContain('outcome="failed"');
  }, 90_000);
});
