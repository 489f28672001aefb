import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureDashboardBuilt } from '../apps/dashboard/scripts/build-if-stale.mjs';
import { startStack, type Stack } from './support/stack.js';
import { launchChromium } from './support/browser.js';

/** The Hosts view in real Chromium against a real worker (watchdog enforcement): the enforcement line in words, the governor's diagnostic behind a disclosure. */

let stack: Stack;
let browser: Browser;

beforeAll(async () => {
  await ensureDashboardBuilt({ quiet: true });
  stack = await startStack({ gateway: { maxEventLoopDelayMs: 0 }, engines: [{ name: 'classic' }], workerEnv: { ENFORCEMENT: 'watchdog' } });
  browser = await launchChromium();
}, 180_000);
afterAll(async () => {
  await browser?.close();
  await stack?.close();
}, 60_000);

describe('Hosts view', () => {
  it('says how memory limits are enforced in words, with the diagnostic folded away', async () => {
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    page.setDefaultTimeout(20_000);
    await page.goto(`${stack.gw.url}/dashboard/#/hosts`);
    const dd = page.getByTestId('enforcement').first();
    await dd.waitFor();
    expect(await dd.innerText()).toMatch(/^Each engine's memory limit is enforced by the worker's RSS watchdog/);
    const details = dd.locator('details');
    expect(await details.evaluate((el) => (el as unknown as { open: boolean }).open)).toBe(false);
    // Folded: the raw diagnostic is not shown until asked for.
    expect(await dd.locator('details > span').isVisible()).toBe(false);
    await dd.locator('summary').click();
    expect(await dd.locator('details > span').isVisible()).toBe(true);
    expect(await dd.locator('details > span').innerText()).toContain('watchdog requested in configuration');
  }, 60_000);
});
