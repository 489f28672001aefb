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
    const html = await (await fetch(`${gw.url}/admin/queues`)).text();
    expect(html).not.toContain('fonts.googleapis.com');
  }, 60_000);
});
