import type { Browser } from 'playwright-core';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build, type Gateway } from '../apps/gateway/src/app.js';
import { loadGatewayConfig } from '../apps/gateway/src/config.js';
import { launchChromium } from './support/browser.js';
import { createNetwork, netnsUnavailable, type TestNetwork } from './support/netns.js';
import { startTestRedis, type TestRedis } from './support/redis.js';

/**
 * /docs (Swagger UI) over plain HTTP on a non-loopback address: the page was blank because the content security policy
 * carried `upgrade-insecure-requests`, so Chromium fetched its scripts and styles over https. Loopback hides that (the
 * browser treats 127.0.0.1 as potentially trustworthy), so the gateway binds the address of a private test network's
 * bridge (test/support/netns.ts, 10.254.N.1, nothing routes there) and Chromium, on this host, loads the page from it.
 * Needs root and `ip`; skipped with the reason otherwise.
 */

const unavailable = netnsUnavailable();

let net: TestNetwork | undefined;
let redis: TestRedis;
let gw: Gateway;
let url: string;
let browser: Browser;

describe.skipIf(Boolean(unavailable))(`/docs over plain HTTP on a LAN address${unavailable ? ` (skipped: ${unavailable})` : ''}`, () => {
  beforeAll(async () => {
    // One namespace is the least createNetwork makes; the bridge's address in this namespace is what the gateway binds.
    net = await createNetwork(['peer']);
    redis = await startTestRedis();
    const host = net.clientAddress;
    const config = loadGatewayConfig({
      env: { REDIS_URL: redis.url },
      overrides: { host, port: 0, logLevel: 'warn', acceptWithoutWorker: true },
    });
    gw = await build({ config, logger: pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }) });
    url = await gw.app.listen({ host, port: 0 });
    expect(url).toMatch(/^http:\/\/10\.254\.\d+\.1:\d+$/);
    browser = await launchChromium();
  }, 90_000);
  afterAll(async () => {
    await browser?.close();
    await gw?.app.close();
    await redis?.close();
    await net?.close();
  }, 60_000);

  it('renders the operations, with every request plain http to the gateway', async () => {
    const csp = (await fetch(`${url}/docs/`)).headers.get('content-security-policy') ?? '';
    expect(csp).not.toContain('upgrade-insecure-requests');

    const page = await browser.newPage();
    page.setDefaultTimeout(20_000);
    const requests: string[] = [];
    const failed: string[] = [];
    page.on('request', (r) => requests.push(r.url()));
    page.on('requestfailed', (r) => failed.push(`${r.url()} (${r.failure()?.errorText ?? '?'})`));
    await page.goto(`${url}/docs`);
    // Swagger UI draws one block per operation: the page is not blank.
    await page.locator('.opblock').first().waitFor();
    const ops = await page.locator('.opblock').count();
    expect(ops).toBeGreaterThan(10);
    expect(await page.locator('.opblock-summary-path', { hasText: '/v1/jobs' }).count()).toBeGreaterThan(0);
    expect(requests.filter((u) => u.startsWith('https:'))).toEqual([]);
    expect(requests.filter((u) => !u.startsWith(url) && !u.startsWith('data:') && !u.startsWith('blob:'))).toEqual([]);
    expect(failed).toEqual([]);
    await page.close();
  }, 60_000);
});
