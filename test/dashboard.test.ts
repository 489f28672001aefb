import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureDashboardBuilt } from '../apps/dashboard/scripts/build-if-stale.mjs';
import { smallPhoto } from './support/images.js';
import { startTestRedis, type TestRedis } from './support/redis.js';
import { REPO, startGateway, startWorker, submit, until, waitForStatus, type RunningGateway, type RunningWorker } from './support/stack.js';
import { launchChromium } from './support/browser.js';

/**
 * The dashboard in real headless Chromium (Debian's package; `apt-get install chromium`) against the real gateway, a real
 * worker and fixture engines. Everything the page shows arrives over its one SSE stream: the test never reloads it.
 * It also writes the screenshots the README shows (docs/screenshots/).
 */
// The README's screenshots are rewritten only on request (UPDATE_SCREENSHOTS=1) or when missing, so test runs leave the tree clean.
const DOC_SHOTS = join(REPO, 'docs/screenshots');
const SHOTS =
  process.env.UPDATE_SCREENSHOTS === '1' || !existsSync(join(DOC_SHOTS, 'dashboard-queue.png'))
    ? DOC_SHOTS
    : mkdtempSync(join(tmpdir(), 'pe-shots-'));
const fixture = join(REPO, 'test/fixtures/engines/fixture-engine.mjs');
const HOST = 'dash-host';
const TOKEN = 'operator-token-for-tests-0123456789';
/** The bits of HTMLImageElement the test reads (this tsconfig has no DOM types). */
type Img = { complete: boolean; naturalWidth: number };

let redis: TestRedis;
let gw: RunningGateway;
let worker: RunningWorker;
let browser: Browser;
let page: Page;

beforeAll(async () => {
  await ensureDashboardBuilt({ quiet: true });
  redis = await startTestRedis();
  gw = await startGateway(redis.url, { knownEngines: ['classic', 'slow'], dashboardSampleMs: 500, jobBackoffMs: 50 });
  const file = join(mkdtempSync(join(tmpdir(), 'pe-wcfg-')), 'worker.json');
  writeFileSync(
    file,
    JSON.stringify({
      engines: [
        { name: 'classic' },
        // A real resize after a pause long enough to watch each state on the page.
        { name: 'slow', command: [process.execPath, fixture, '--mode', 'resize', '--delay-ms', '1500'], stopGraceMs: 1000 },
      ],
    }),
  );
  worker = await startWorker({
    REDIS_URL: redis.url,
    STORAGE_DIR: gw.storageDir,
    WORKER_CONFIG: file,
    HOST_ID: HOST,
    ADMISSION_CHECK_MS: '100',
  });
  await worker.waitForLog((r) => r.msg === 'worker ready');
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  page.setDefaultTimeout(20_000);
  await page.goto(`${gw.url}/dashboard/`);
  await page.getByTestId('live-indicator').filter({ hasText: 'live' }).waitFor();
  // Marks this document: if the page reloaded, the mark would be gone.
  await page.evaluate(() => ((globalThis as unknown as { peMark: number }).peMark = 42));
  mkdirSync(SHOTS, { recursive: true });
});

afterAll(async () => {
  await browser?.close();
  await worker?.stop();
  await gw?.close();
  await redis?.close();
});

async function notReloaded(): Promise<void> {
  expect(await page.evaluate(() => (globalThis as unknown as { peMark?: number }).peMark)).toBe(42);
}

async function submitSlow(): Promise<string> {
  const res = await submit(gw.url, await smallPhoto('jpeg', 240), { engine: 'slow', scale: '2' });
  expect(res.status).toBe(202);
  return ((await res.json()) as { id: string }).id;
}

describe('dashboard in Chromium', () => {
  it('shows a job go queued → active → completed without a reload', async () => {
    await page.getByTestId('tab-jobs').click();
    await page.getByTestId('jobs-table').waitFor();
    // Pool of one: the second job waits while the first runs.
    const first = await submitSlow();
    const second = await submitSlow();
    const row = (status: string) => page.locator(`tr[data-job-id="${second}"][data-status="${status}"]`);
    await row('queued').waitFor();
    await row('active').waitFor();
    await row('completed').waitFor();
    await page.locator(`tr[data-job-id="${first}"][data-status="completed"]`).waitFor();
    await page.screenshot({ path: join(SHOTS, 'dashboard-jobs.png') });
    await notReloaded();
  });

  it('pauses and resumes the queue from the page', async () => {
    await page.getByTestId('tab-queue').click();
    await page.getByTestId('pause-slow').click();
    await page.getByTestId('queue-state-slow').filter({ hasText: 'paused' }).waitFor();
    expect(await gw.app.jobs.queue('slow').isPaused()).toBe(true);
    const id = await submitSlow();
    // Paused: the job stays queued, and the page counts it.
    await until('the queued job on the page', async () => Number(await page.getByTestId('total-queued').textContent()) >= 1);
    expect(((await (await fetch(`${gw.url}/v1/jobs/${id}`)).json()) as { status: string }).status).toBe('queued');
    await page.screenshot({ path: join(SHOTS, 'dashboard-queue.png') });
    await page.getByTestId('resume-slow').click();
    await page.getByTestId('queue-state-slow').filter({ hasText: 'running' }).waitFor();
    expect((await waitForStatus(gw.url, id, ['completed', 'failed'])).status).toBe('completed');
    await until('the page to count it completed', async () => (await page.getByTestId('total-queued').textContent()) === '0');
    await notReloaded();
  });

  it('shows the host flip to holding when the admission floor is raised from the page, and back', async () => {
    await page.getByTestId('tab-hosts').click();
    const card = page.getByTestId(`host-${HOST}`);
    await card.waitFor();
    expect(await card.getAttribute('data-admission')).toBe('admitting');
    await page.getByTestId(`floor-input-${HOST}`).fill('1000000');
    await page.getByTestId(`floor-apply-${HOST}`).click();
    await page.locator(`[data-testid="host-${HOST}"][data-admission="holding"]`).waitFor();
    expect(await page.getByTestId(`admission-reason-${HOST}`).textContent()).toContain('MEMORY_AVAILABLE_LOW');
    await page.locator('[data-testid="timeline"] li', { hasText: 'MEMORY_AVAILABLE_LOW' }).first().waitFor();
    await page.screenshot({ path: join(SHOTS, 'dashboard-hosts.png'), fullPage: true });
    await page.getByTestId(`floor-input-${HOST}`).fill('0');
    await page.getByTestId(`floor-apply-${HOST}`).click();
    await page.locator(`[data-testid="host-${HOST}"][data-admission="admitting"]`).waitFor();
    await notReloaded();
  });

  it('opens a job page with both thumbnails, options and the log', async () => {
    const id = await submitSlow();
    expect((await waitForStatus(gw.url, id, ['completed', 'failed'])).status).toBe('completed');
    await page.getByTestId('tab-jobs').click();
    await page.locator(`tr[data-job-id="${id}"] a`).click();
    await page.locator('[data-testid="job-page"][data-status="completed"]').waitFor();
    for (const which of ['input', 'output']) {
      const img = page.getByTestId(`thumb-${which}`);
      await until(
        `the ${which} thumbnail to load`,
        async () => (await img.evaluate((el) => ((el as unknown as Img).complete ? (el as unknown as Img).naturalWidth : 0))) > 0,
      );
      // Small, never the full image (the output is 480 px wide).
      const w = await img.evaluate((el) => (el as unknown as Img).naturalWidth);
      expect(w).toBeLessThanOrEqual(320);
    }
    expect(existsSync(join(gw.storageDir, id, 'thumb-output.webp'))).toBe(true);
    await page.screenshot({ path: join(SHOTS, 'dashboard-job.png'), fullPage: true });
    await notReloaded();
  });
});

describe('operator surface', () => {
  it('serves bull-board read-only for every engine queue', async () => {
    const res = await fetch(`${gw.url}/admin/queues/api/queues?activeQueue=enhance.slow&page=1&jobsPerPage=10`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { queues: Array<{ name: string; readOnlyMode: boolean }> };
    expect(body.queues.map((q) => q.name).sort()).toEqual(['enhance.classic', 'enhance.slow']);
    expect(body.queues.every((q) => q.readOnlyMode)).toBe(true);
  });

  it('documents the API as OpenAPI 3 from the same schemas, multipart options included', async () => {
    // Only the parts of an OpenAPI document this test reads.
    interface Schema {
      required?: string[];
      enum?: number[];
      anyOf?: Array<{ enum?: number[] }>;
      properties: Record<string, Schema>;
    }
    type Operation = { requestBody: { content: Record<string, { schema: Schema }> } };
    const doc = (await (await fetch(`${gw.url}/docs/json`)).json()) as {
      openapi: string;
      paths: Record<string, Record<string, Operation>>;
    };
    expect(doc.openapi).toMatch(/^3\./);
    const post = doc.paths['/v1/jobs']!.post!;
    const schema = post.requestBody.content['multipart/form-data']!.schema;
    expect(schema.required).toContain('image');
    const scale = schema.properties.scale!;
    expect(scale.enum ?? scale.anyOf?.map((x) => x.enum?.[0])).toEqual([1, 2, 4]);
    expect(schema.properties.bgTile).toMatchObject({ type: 'integer', minimum: 0, maximum: 1024 });
    expect(
      doc.paths['/v1/system/hosts/{hostId}/admission']!.put!.requestBody.content['application/json']!.schema.properties,
    ).toHaveProperty('minAvailableBytes');
    expect(Object.keys(doc.paths).some((p) => p.startsWith('/admin/queues'))).toBe(false);
    expect((await fetch(`${gw.url}/docs`)).status).toBe(200);
  });

  it('asks for the operator token when one is configured (Bearer, basic auth or the sign-in cookie)', async () => {
    const secured = await startGateway(redis.url, { host: '0.0.0.0', dashboardToken: TOKEN }, gw.storageDir);
    try {
      const u = secured.url;
      const denied = await fetch(`${u}/dashboard/api/overview`);
      expect(denied.status).toBe(401);
      expect(((await denied.json()) as { code: string }).code).toBe('OPERATOR_AUTH_REQUIRED');
      expect(denied.headers.get('www-authenticate')).toMatch(/Bearer/);
      expect((await fetch(`${u}/dashboard/api/overview`, { headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(200);
      expect(
        (
          await fetch(`${u}/dashboard/api/overview`, {
            headers: { authorization: `Basic ${Buffer.from(`ops:${TOKEN}`).toString('base64')}` },
          })
        ).status,
      ).toBe(200);
      expect((await fetch(`${u}/dashboard/api/overview`, { headers: { authorization: 'Bearer wrong-token-000000' } })).status).toBe(401);
      expect((await fetch(`${u}/admin/queues/api/queues`)).status).toBe(401);
      expect(
        (
          await fetch(`${u}/v1/system/hosts/${HOST}/admission`, {
            method: 'PUT',
            headers: { 'content-type': 'application/json' },
            body: '{"minAvailableBytes":0}',
          })
        ).status,
      ).toBe(401);
      expect((await fetch(`${u}/dashboard/api/queues/slow/pause`, { method: 'POST' })).status).toBe(401);
      // A browser is sent to the sign-in form, which sets an HttpOnly SameSite=Strict cookie.
      const html = await fetch(`${u}/dashboard/`, { headers: { accept: 'text/html' }, redirect: 'manual' });
      expect(html.status).toBe(303);
      expect(html.headers.get('location')).toMatch(/^\/dashboard\/login\?next=/);
      const login = await fetch(`${u}/dashboard/login`, {
        method: 'POST',
        body: new URLSearchParams({ token: TOKEN, next: '/dashboard/' }),
        redirect: 'manual',
      });
      expect(login.status).toBe(303);
      const cookie = login.headers.get('set-cookie')!;
      expect(cookie).toMatch(/HttpOnly/);
      expect(cookie).toMatch(/SameSite=Strict/);
      expect((await fetch(`${u}/dashboard/api/overview`, { headers: { cookie: cookie.split(';')[0]! } })).status).toBe(200);
      const wrong = await fetch(`${u}/dashboard/login`, {
        method: 'POST',
        body: new URLSearchParams({ token: 'nope' }),
        redirect: 'manual',
      });
      expect(wrong.headers.get('location')).toMatch(/failed=1/);
      // The public API is not an operator page.
      expect((await fetch(`${u}/healthz`)).status).toBe(200);
    } finally {
      await secured.close();
    }
  });

  it('refuses operator pages without a token unless the gateway binds loopback', async () => {
    const open = await startGateway(redis.url, { host: '0.0.0.0' }, gw.storageDir);
    try {
      for (const path of ['/dashboard/', '/dashboard/api/overview', '/admin/queues']) {
        const res = await fetch(`${open.url}${path}`);
        expect(res.status, path).toBe(403);
        const p = (await res.json()) as { code: string; detail: string };
        expect(p.code).toBe('OPERATOR_ACCESS_DISABLED');
        expect(p.detail).toContain('DASHBOARD_TOKEN');
      }
      expect(
        (
          await fetch(`${open.url}/v1/system/hosts/*/admission`, {
            method: 'PUT',
            headers: { 'content-type': 'application/json' },
            body: '{"minAvailableBytes":0}',
          })
        ).status,
      ).toBe(403);
      expect((await fetch(`${open.url}/metrics`)).status).toBe(200);
    } finally {
      await open.close();
    }
  });
});
