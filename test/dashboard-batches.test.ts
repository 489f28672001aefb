import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureDashboardBuilt } from '../apps/dashboard/scripts/build-if-stale.mjs';
import { startStack, until, type Stack } from './support/stack.js';
import { smallPhoto } from './support/images.js';
import { launchChromium } from './support/browser.js';

/**
 * The dashboard's Batches view in real Chromium against a real gateway and worker: every item listed, numbered from 1
 * (the API's index is 0-based), with a filter by state.
 */

let stack: Stack;
let browser: Browser;
let batchId: string;

beforeAll(async () => {
  await ensureDashboardBuilt({ quiet: true });
  stack = await startStack({ gateway: { maxEventLoopDelayMs: 0 }, engines: [{ name: 'classic' }] });
  const jpeg = await smallPhoto('jpeg', 64);
  const form = new FormData();
  for (const name of ['first.jpg', 'second.jpg', 'third.jpg']) form.append('images', new Blob([jpeg], { type: 'image/jpeg' }), name);
  form.append('images', new Blob([Buffer.from('not a photo at all')], { type: 'image/jpeg' }), 'notes.jpg');
  const res = await fetch(`${stack.gw.url}/v1/batches`, { method: 'POST', body: form });
  expect(res.status).toBe(202);
  batchId = ((await res.json()) as { id: string }).id;
  await until(
    'the batch finished',
    async () => {
      const v = (await (await fetch(`${stack.gw.url}/v1/batches/${batchId}`)).json()) as { status: string };
      return v.status === 'partial' || v.status === 'completed' || v.status === 'failed' ? v : undefined;
    },
    60_000,
    100,
  );
  browser = await launchChromium();
}, 180_000);
afterAll(async () => {
  await browser?.close();
  await stack?.close();
}, 60_000);

describe('Batches view', () => {
  it('lists every item numbered from 1 and filters them by state', async () => {
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    page.setDefaultTimeout(20_000);
    await page.goto(`${stack.gw.url}/dashboard/#/batches`);
    const batch = page.locator(`[data-batch-id="${batchId}"]`);
    const rows = batch.locator('[data-testid="batch-items"] tbody tr');
    await until('four item rows', async () => ((await rows.count()) === 4 ? true : undefined), 20_000, 100);
    const numbers = await rows.locator('td:first-child').allInnerTexts();
    expect(numbers).toEqual(['1', '2', '3', '4']);
    expect(await rows.nth(0).locator('td').nth(1).innerText()).toBe('first.jpg');
    expect(await rows.nth(3).locator('td').nth(1).innerText()).toBe('notes.jpg');

    await batch.getByTestId('batch-item-filter').selectOption('failed');
    await until('only the failed item', async () => ((await rows.count()) === 1 ? true : undefined), 10_000, 50);
    expect(await rows.first().locator('td').first().innerText()).toBe('4');
    expect(await rows.first().innerText()).toContain('UNSUPPORTED_MEDIA_TYPE');

    await batch.getByTestId('batch-item-filter').selectOption('completed');
    await until('the three completed items', async () => ((await rows.count()) === 3 ? true : undefined), 10_000, 50);
    expect(await rows.locator('td:first-child').allInnerTexts()).toEqual(['1', '2', '3']);
  }, 90_000);
});
