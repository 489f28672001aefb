import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureDashboardBuilt } from '../apps/dashboard/scripts/build-if-stale.mjs';
import { startStack, submit, waitForStatus, type Stack } from './support/stack.js';
import { smallPhoto } from './support/images.js';
import { launchChromium } from './support/browser.js';

/** The Queue view's KPI cards at 800 px and at 1400 px: every value on one line, none cut off. Real Chromium. */

let stack: Stack;
let browser: Browser;

beforeAll(async () => {
  await ensureDashboardBuilt({ quiet: true });
  stack = await startStack({ gateway: { maxEventLoopDelayMs: 0, dashboardSampleMs: 200 }, engines: [{ name: 'classic' }] });
  // Finished jobs, so the p50/p95 cards hold real figures (the longest values on the page).
  for (let i = 0; i < 3; i++) {
    const res = await submit(stack.gw.url, await smallPhoto('jpeg', 200));
    await waitForStatus(stack.gw.url, ((await res.json()) as { id: string }).id, ['completed']);
  }
  browser = await launchChromium();
}, 180_000);
afterAll(async () => {
  await browser?.close();
  await stack?.close();
}, 60_000);

describe('Queue view KPIs', () => {
  for (const width of [800, 1400]) {
    it(`do not wrap or overflow at ${width} px`, async () => {
      const page = await browser.newPage({ viewport: { width, height: 900 } });
      page.setDefaultTimeout(20_000);
      await page.goto(`${stack.gw.url}/dashboard/#/queue`);
      await page.getByTestId('total-completed').filter({ hasText: '3' }).waitFor();
      await page.locator('.card-value', { hasText: '/' }).first().waitFor();
      const cards = await page.locator('.card-value').evaluateAll((els) =>
        els.map((e) => {
          const el = e as unknown as { innerText: string; scrollWidth: number; clientWidth: number; getClientRects(): ArrayLike<unknown>; getBoundingClientRect(): { height: number } };
          const style = (globalThis as unknown as { getComputedStyle(x: unknown): { lineHeight: string; fontSize: string } }).getComputedStyle(e);
          const line = Number.parseFloat(style.lineHeight) || Number.parseFloat(style.fontSize) * 1.2;
          return { text: el.innerText, lines: Math.round(el.getBoundingClientRect().height / line), overflow: el.scrollWidth > el.clientWidth + 1 };
        }),
      );
      expect(cards.length).toBeGreaterThanOrEqual(7);
      for (const c of cards) {
        expect(c.lines, `"${c.text}" at ${width} px`).toBe(1);
        expect(c.overflow, `"${c.text}" cut off at ${width} px`).toBe(false);
      }
    }, 60_000);
  }
});
