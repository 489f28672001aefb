import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureDashboardBuilt } from '../apps/dashboard/scripts/build-if-stale.mjs';
import { launchChromium } from './support/browser.js';
import { fixtureEngine, startStack, submit, until, waitForStatus, type Stack } from './support/stack.js';
import { smallPhoto } from './support/images.js';

/**
 * A job canceled while it runs is `canceled` in the API; the dashboard's job list called it failed (it sits in BullMQ's
 * failed set) and /metrics counted it as failed. Real gateway, real worker running a slow fixture engine.
 */

let stack: Stack;
let browser: Browser;
beforeAll(async () => {
  await ensureDashboardBuilt({ quiet: true });
  browser = await launchChromium();
  stack = await startStack({
    gateway: { knownEngines: ['slow'], defaultEngine: 'slow', maxEventLoopDelayMs: 0, jobAttempts: 1, dashboardSampleMs: 200 },
    engines: [fixtureEngine('slow', 'sleep', 30_000)],
  });
}, 120_000);
afterAll(async () => {
  await browser?.close();
  await stack?.close();
}, 60_000);

describe('a job canceled while running', () => {
  it('is canceled in the dashboard list and in /metrics, never failed', async () => {
    const res = await submit(stack.gw.url, await smallPhoto('jpeg', 64));
    const { id } = (await res.json()) as { id: string };
    await waitForStatus(stack.gw.url, id, ['active']);
    expect((await fetch(`${stack.gw.url}/v1/jobs/${id}`, { method: 'DELETE' })).status).toBe(200);
    const row = await until(
      'the job in the dashboard list, finished',
      async () => {
        const page = (await (await fetch(`${stack.gw.url}/dashboard/api/jobs?state=all&pageSize=50`)).json()) as {
          jobs: Array<{ id: string; status: string }>;
        };
        const r = page.jobs.find((j) => j.id === id);
        return r && r.status !== 'active' ? r : undefined;
      },
      30_000,
      100,
    );
    expect(row.status).toBe('canceled');
    const metrics = await until(
      'the canceled job in /metrics',
      async () => {
        const t = await (await fetch(`${stack.gw.url}/metrics`)).text();
        return t.includes('outcome="canceled"') ? t : undefined;
      },
      20_000,
      100,
    );
    expect(metrics).toContain('pe_jobs_finished_total{engine="slow",outcome="canceled",code="JOB_CANCELED"} 1');
    expect(metrics).not.toContain('outcome="failed"');
    // Queue counters: BullMQ keeps the job in its failed set, but it is counted as canceled, not failed.
    expect(metrics).toContain('pe_queue_jobs{engine="slow",state="canceled"} 1');
    expect(metrics).toContain('pe_queue_jobs{engine="slow",state="failed"} 0');
    type O = {
      totals: { failed: number; canceled: number };
      stats: { failed: number; canceled: number };
      queues: Array<{ engine: string; canceled: number; counts: { failed: number } }>;
      samples: Array<{ canceled?: number; failed: number; canceledPerMin?: number; failedPerMin: number }>;
    };
    const ov = await until(
      'a sample with the canceled job',
      async () => {
        const o = (await (await fetch(`${stack.gw.url}/dashboard/api/overview`)).json()) as O;
        return o.samples.some((s) => s.canceledPerMin === 1) ? o : undefined;
      },
      20_000,
      100,
    );
    expect(ov.totals).toMatchObject({ failed: 0, canceled: 1 });
    expect(ov.stats).toMatchObject({ failed: 0, canceled: 1 });
    expect(ov.queues.find((q) => q.engine === 'slow')).toMatchObject({ canceled: 1, counts: { failed: 0 } });
    expect(ov.samples.every((s) => s.failed === 0 && s.failedPerMin === 0)).toBe(true);
    // The Queue view's KPI cards and counters, in Chromium.
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.setDefaultTimeout(20_000);
    await page.goto(`${stack.gw.url}/dashboard/#/queue`);
    await page.getByTestId('total-canceled').filter({ hasText: '1' }).waitFor();
    expect(await page.getByTestId('total-failed').innerText()).toBe('0');
    expect(await page.getByTestId('count-slow-canceled').innerText()).toBe('1');
    expect(await page.getByTestId('count-slow-failed').innerText()).toBe('0');
    await page.close();
  }, 90_000);

  it("the queue's Retry failed leaves it canceled (it retries failed jobs only)", async () => {
    const retry = await fetch(`${stack.gw.url}/dashboard/api/queues/slow/retry-failed`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    expect(await retry.json()).toEqual({ engine: 'slow', retried: 0 });
    const page = (await (await fetch(`${stack.gw.url}/dashboard/api/jobs?state=all&pageSize=50`)).json()) as {
      jobs: Array<{ id: string; status: string }>;
    };
    expect(page.jobs.map((j) => j.status)).toEqual(['canceled']);
    const metrics = await (await fetch(`${stack.gw.url}/metrics`)).text();
    expect(metrics).toContain('pe_queue_jobs{engine="slow",state="canceled"} 1');
    expect(metrics).toContain('pe_queue_jobs{engine="slow",state="waiting"} 0');
  });
});
