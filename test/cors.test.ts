import { createServer, type Server } from 'node:http';
import sharp from 'sharp';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, startStack, type RunningGateway, type Stack } from './support/stack.js';
import { launchChromium } from './support/browser.js';

/**
 * Browser pages on another origin (PhotoEnhanceAI's examples/*.html and its web app) calling the gateway: CORS on the
 * job, batch and compat routes, never on operator routes; preflights answered before the host check, rate limits and
 * API keys (a preflight carries no key). And the service description at `/` that PhotoEnhanceAI's test client reads.
 * Real gateway, real worker, real Chromium driving a page served from another port.
 */

const KEY = 'secret-key-for-cors-0123';
const auth = { authorization: `Bearer ${KEY}` };
const ORIGIN = 'http://127.0.0.1:1'; // any origin but the gateway's own

let stack: Stack;
let gw: RunningGateway;
beforeAll(async () => {
  stack = await startStack({
    gateway: { apiKeys: [`page:${KEY}`], dashboardToken: 'operator-token-for-cors-test', maxEventLoopDelayMs: 0 },
    engines: [{ name: 'classic' }],
  });
  gw = stack.gw;
}, 120_000);
afterAll(async () => stack?.close(), 60_000);

describe('GET / (PhotoEnhanceAI service description)', () => {
  it('describes the service as JSON to API clients', async () => {
    const res = await fetch(`${gw.url}/`, { headers: { accept: '*/*' } });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { service: string; version: string; status: string; endpoints: Record<string, string> };
    expect(body).toMatchObject({ service: 'PhotoEnhance Gateway', status: 'running', version: expect.stringMatching(/^\d+\.\d+\.\d+/) });
    expect(body.endpoints).toMatchObject({
      health: '/health',
      enhance: '/api/v1/enhance',
      status: '/api/v1/status/{task_id}',
      download: '/api/v1/download/{task_id}',
    });
  });

  it('sends a browser asking for HTML to the dashboard', async () => {
    const res = await fetch(`${gw.url}/`, { headers: { accept: 'text/html,application/xhtml+xml,*/*;q=0.8' }, redirect: 'manual' });
    expect(res.status).toBe(302);
    expect(res.headers.get('location')).toBe('/dashboard');
  });
});

describe('CORS headers', () => {
  it('answers a preflight for a job submission before API keys and the host check (no key on a preflight)', async () => {
    const res = await fetch(`${gw.url}/v1/jobs`, {
      method: 'OPTIONS',
      headers: {
        origin: ORIGIN,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization, idempotency-key',
        host: 'unknown.example',
      },
    });
    expect(res.status).toBe(204);
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
    expect(res.headers.get('access-control-allow-methods')).toContain('POST');
    expect(res.headers.get('access-control-allow-headers')).toBe('authorization, idempotency-key');
    expect(res.headers.get('access-control-allow-credentials')).toBeNull();
    const compat = await fetch(`${gw.url}/api/v1/status/j_00000000000000000000`, {
      method: 'OPTIONS',
      headers: { origin: ORIGIN, 'access-control-request-method': 'GET' },
    });
    expect(compat.status).toBe(204);
  });

  it('exposes Location, Retry-After and Content-Disposition on answers, errors included', async () => {
    const res = await fetch(`${gw.url}/v1/jobs/j_00000000000000000000`, { headers: { origin: ORIGIN, ...auth } });
    expect(res.status).toBe(404);
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
    const exposed = (res.headers.get('access-control-expose-headers') ?? '').toLowerCase();
    for (const h of ['location', 'retry-after', 'content-disposition']) expect(exposed).toContain(h);
    const noKey = await fetch(`${gw.url}/v1/jobs/j_00000000000000000000`, { headers: { origin: ORIGIN } });
    expect(noKey.status).toBe(401);
    expect(noKey.headers.get('access-control-allow-origin')).toBe('*');
  });

  it('never on operator routes: no CORS headers, and a preflight there is not answered', async () => {
    const pre = await fetch(`${gw.url}/dashboard/api/overview`, {
      method: 'OPTIONS',
      headers: { origin: ORIGIN, 'access-control-request-method': 'GET' },
    });
    expect(pre.status).toBe(404);
    expect(pre.headers.get('access-control-allow-origin')).toBeNull();
    const admission = await fetch(`${gw.url}/v1/system/hosts/*/admission`, {
      method: 'OPTIONS',
      headers: { origin: ORIGIN, 'access-control-request-method': 'PUT' },
    });
    expect(admission.headers.get('access-control-allow-origin')).toBeNull();
    const page = await fetch(`${gw.url}/dashboard/`, { headers: { origin: ORIGIN } });
    expect(page.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('CORS_ORIGINS as a list echoes listed origins only; none turns CORS off', async () => {
    const listed = await startGateway(stack.redis.url, { corsOrigins: ['http://app.example:3000', 'https://photos.example'] });
    const off = await startGateway(stack.redis.url, { corsOrigins: ['none'] });
    try {
      const ok = await fetch(`${listed.url}/health`, { headers: { origin: 'https://photos.example' } });
      expect(ok.headers.get('access-control-allow-origin')).toBe('https://photos.example');
      expect(ok.headers.get('vary')).toMatch(/origin/i);
      const other = await fetch(`${listed.url}/health`, { headers: { origin: 'https://evil.example' } });
      expect(other.headers.get('access-control-allow-origin')).toBeNull();
      const none = await fetch(`${off.url}/health`, { headers: { origin: ORIGIN } });
      expect(none.headers.get('access-control-allow-origin')).toBeNull();
    } finally {
      await listed.close();
      await off.close();
    }
  });
});

describe('a page from another origin in Chromium', () => {
  let browser: Browser;
  let site: Server;
  let siteUrl: string;

  beforeAll(async () => {
    const photo = await sharp({ create: { width: 48, height: 32, channels: 3, background: '#3366aa' } })
      .png()
      .toBuffer();
    // A page of PhotoEnhanceAI's examples/*.html kind: plain fetch() calls to the API on another port.
    const html = `<!doctype html><meta charset="utf-8"><title>cross-origin client</title><script>
      const API = ${JSON.stringify(gw.url)};
      const KEY = ${JSON.stringify(KEY)};
      async function until(fn) { for (let i = 0; i < 600; i++) { const v = await fn(); if (v) return v; await new Promise((r) => setTimeout(r, 100)); } throw new Error('timed out'); }
      window.run = async () => {
        const photo = await (await fetch('/photo.png')).blob();
        // Native API: upload, follow, download.
        const form = new FormData(); form.append('scale', '2'); form.append('image', photo, 'page.png');
        const sub = await fetch(API + '/v1/jobs', { method: 'POST', body: form, headers: { Authorization: 'Bearer ' + KEY, 'Idempotency-Key': 'page-1' } });
        const accepted = await sub.json();
        const location = sub.headers.get('Location');
        const done = await until(async () => { const v = await (await fetch(API + accepted.links.self, { headers: { Authorization: 'Bearer ' + KEY } })).json(); return v.status === 'completed' || v.status === 'failed' ? v : null; });
        const res = await fetch(API + accepted.links.result, { headers: { Authorization: 'Bearer ' + KEY } });
        const blob = await res.blob();
        const img = new Image(); img.src = URL.createObjectURL(blob); await img.decode();
        // PhotoEnhanceAI's own routes, as its front-ends call them.
        const cform = new FormData(); cform.append('file', photo, 'compat.png');
        const task = await (await fetch(API + '/api/v1/enhance', { method: 'POST', body: cform, headers: { Authorization: 'Bearer ' + KEY } })).json();
        const cdone = await until(async () => { const v = await (await fetch(API + '/api/v1/status/' + task.task_id, { headers: { Authorization: 'Bearer ' + KEY } })).json(); return v.status === 'completed' || v.status === 'failed' ? v : null; });
        const cres = await fetch(API + '/api/v1/download/' + task.task_id, { headers: { Authorization: 'Bearer ' + KEY } });
        const cblob = await cres.blob();
        return { submitted: sub.status, location, status: done.status, download: res.status, disposition: res.headers.get('Content-Disposition'), width: img.naturalWidth, compatStatus: cdone.status, compatDownload: cres.status, compatBytes: cblob.size };
      };
    </script><p>ready</p>`;
    site = createServer((req, res) => {
      if (req.url === '/photo.png') {
        res.writeHead(200, { 'content-type': 'image/png' });
        res.end(photo);
      } else {
        res.writeHead(200, { 'content-type': 'text/html' });
        res.end(html);
      }
    });
    await new Promise<void>((r) => site.listen(0, '127.0.0.1', r));
    const addr = site.address();
    // Another port, and another host name for the same address: a different origin on every count.
    siteUrl = `http://localhost:${typeof addr === 'object' && addr ? addr.port : 0}`;
    browser = await launchChromium();
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    await new Promise<void>((r) => (site ? site.close(() => r()) : r()));
  });

  it('uploads, follows and downloads through the native and the compat routes', async () => {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    await page.goto(`${siteUrl}/`);
    const result = await page.evaluate(() => (globalThis as unknown as { run: () => Promise<Record<string, unknown>> }).run());
    expect(errors, errors.join('\n')).toEqual([]);
    expect(result).toMatchObject({
      submitted: 202,
      location: expect.stringMatching(/^\/v1\/jobs\/j_/),
      status: 'completed',
      download: 200,
      width: 96,
      compatStatus: 'completed',
      compatDownload: 200,
    });
    expect(String(result.disposition)).toContain('page_enhanced.png');
    expect(result.compatBytes).toBeGreaterThan(100);
  }, 120_000);
});
