import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestRedis, type TestRedis } from './support/redis.js';
import { startGateway, type RunningGateway } from './support/stack.js';
import { launchChromium } from './support/browser.js';

/**
 * bull-board at /admin/queues fetches nothing from outside (docs/dashboard.md): its page linked Google's web fonts.
 * Real gateway, real Chromium; every request the page makes is recorded, and outside ones are aborted, not sent.
 */

let redis: TestRedis;
let gw: RunningGateway;
let browser: Browser;

beforeAll(async () => {
  redis = await startTestRedis();
  gw = await startGateway(redis.url, { maxEventLoopDelayMs: 0 });
  browser = await launchChromium();
}, 60_000);
afterAll(async () => {
  await browser?.close();
  await gw?.close();
  await redis?.close();
});

describe('bull-board', () => {
  it('loads with every request going to the gateway itself', async () => {
    const page = await browser.newPage();
    const outside: string[] = [];
    await page.route('**/*', (route) => {
      const url = route.request().url();
      if (url.startsWith(gw.url) || url.startsWith('data:') || url.startsWith('blob:')) return route.continue();
      outside.push(url);
      return route.abort();
    });
    await page.goto(`${gw.url}/admin/queues`);
    await page.getByText('PhotoEnhance queues').first().waitFor({ timeout: 20_000 });
    expect(outside).toEqual([]);
    const res = await fetch(`${gw.url}/admin/queues`);
    expect(await res.text()).not.toContain('fonts.googleapis.com');
    // The policy itself allows nothing from outside: no https: (or any other host) for styles, fonts or scripts.
    const csp = res.headers.get('content-security-policy') ?? '';
    for (const directive of ['style-src', 'font-src', 'script-src', 'default-src']) {
      const sources =
        csp
          .split(';')
          .map((d) => d.trim().split(/\s+/))
          .find(([name]) => name === directive)
          ?.slice(1) ?? [];
      expect(sources.length, `${directive} in ${csp}`).toBeGreaterThan(0);
      expect(
        sources.filter((x) => !["'self'", "'unsafe-inline'", 'data:'].includes(x)),
        `${directive} in ${csp}`,
      ).toEqual([]);
    }
    await page.close();
  }, 60_000);

  for (const scheme of ['light', 'dark'] as const) {
    it(`follows the dashboard's colours and system fonts (browser in ${scheme} mode)`, async () => {
      const page = await browser.newPage({ colorScheme: scheme });
      await page.goto(`${gw.url}/admin/queues`);
      await page.getByText('PhotoEnhance queues').first().waitFor({ timeout: 20_000 });
      const style = await page.evaluate(() => {
        const g = globalThis as unknown as {
          document: { body: object };
          getComputedStyle(e: object): { backgroundColor: string; color: string; fontFamily: string };
        };
        const s = g.getComputedStyle(g.document.body);
        return { bg: s.backgroundColor, fg: s.color, font: s.fontFamily };
      });
      // The dashboard's --bg and --text (apps/dashboard/web/styles.css).
      expect(style.bg).toBe('rgb(11, 17, 32)');
      expect(style.fg).toBe('rgb(226, 232, 240)');
      expect(style.font).not.toContain('IBM Plex');
      await page.close();
    }, 60_000);
  }
});
