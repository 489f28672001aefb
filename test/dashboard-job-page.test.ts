import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureDashboardBuilt } from '../apps/dashboard/scripts/build-if-stale.mjs';
import { startStack, submit, until, waitForStatus, type Stack } from './support/stack.js';
import { smallPhoto } from './support/images.js';
import { launchChromium } from './support/browser.js';

/**
 * The dashboard's job page in real Chromium, for a job the real classic engine finished: a before/after comparison at
 * one scale that a person can drag across, human labels (not `engine decodeMs`), options the engine did not apply listed
 * once, apart.
 */

let stack: Stack;
let browser: Browser;
let id: string;

beforeAll(async () => {
  await ensureDashboardBuilt({ quiet: true });
  stack = await startStack({ gateway: { maxEventLoopDelayMs: 0 }, engines: [{ name: 'classic' }] });
  const res = await submit(stack.gw.url, await smallPhoto('jpeg', 160), { scale: '2', weight: '0.7' });
  id = ((await res.json()) as { id: string }).id;
  await waitForStatus(stack.gw.url, id, ['completed']);
  browser = await launchChromium();
}, 180_000);
afterAll(async () => {
  await browser?.close();
  await stack?.close();
}, 60_000);

type Box = { x: number; y: number; width: number; height: number };

describe('job page', () => {
  it('compares before and after at one scale with a handle to drag', async () => {
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    page.setDefaultTimeout(20_000);
    await page.goto(`${stack.gw.url}/dashboard/#/jobs/${id}`);
    await page.locator('[data-testid="job-page"][data-status="completed"]').waitFor();
    const before = page.getByTestId('thumb-input');
    const after = page.getByTestId('thumb-output');
    for (const img of [before, after]) {
      await until(
        'the image to load',
        async () => ((await img.evaluate((el) => (el as unknown as { naturalWidth: number }).naturalWidth)) > 0 ? true : undefined),
        20_000,
        50,
      );
    }
    const [b, a] = (await Promise.all([before.boundingBox(), after.boundingBox()])) as [Box, Box];
    expect(b).toEqual(a);
    expect(a.width).toBeGreaterThan(300);

    // Drag the handle to a quarter of the way across: the "before" layer shows only that quarter.
    await page.mouse.move(a.x + a.width / 2, a.y + a.height / 2);
    await page.mouse.down();
    await page.mouse.move(a.x + a.width * 0.25, a.y + a.height / 2, { steps: 5 });
    await page.mouse.up();
    const value = Number(await page.getByTestId('compare-slider').inputValue());
    expect(value).toBeGreaterThanOrEqual(20);
    expect(value).toBeLessThanOrEqual(30);
    expect(await before.evaluate((el) => (el as unknown as { style: { clipPath: string } }).style.clipPath)).toBe(
      `inset(0px ${100 - value}% 0px 0px)`,
    );
  }, 60_000);

  it('uses human labels and lists options the engine did not apply once', async () => {
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    await page.goto(`${stack.gw.url}/dashboard/#/jobs/${id}`);
    await page.locator('[data-testid="job-page"][data-status="completed"]').waitFor();
    const text = await page.getByTestId('job-page').innerText();
    expect(text).not.toMatch(/engine \w+Ms/);
    expect(text).toMatch(/Engine: \w+/);
    expect(text).not.toContain('(not applied)');
    expect(text).not.toMatch(/\bbgTile\b|\bonlyCenterFace\b/);
    const notApplied = page.getByTestId('not-applied');
    expect(await notApplied.count()).toBe(1);
    expect(await notApplied.innerText()).toMatch(/^Not applied by classic: .*Face blend weight/);
    expect(await page.getByTestId('job-options').innerText()).toContain('Scale');
  }, 60_000);
});
