import { createHmac } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WEBHOOK_HEADERS, type WebhookPayload } from '@photoenhance/contracts';
import { startTestRedis, type TestRedis } from './support/redis.js';
import { smallPhoto } from './support/images.js';
import { REPO, startGateway, startWorker, submit, until, type RunningGateway, type RunningWorker } from './support/stack.js';

/** Webhooks: signed, retried after receiver errors, delivered once with two gateways, refused for private addresses. */
const SECRET = 'test-webhook-secret-0123456789';
let redis: TestRedis;
let gw: RunningGateway;
let gw2: RunningGateway;
let worker: RunningWorker;
let receiver: Server;
let hookUrl: string;
const fixture = join(REPO, 'test/fixtures/engines/fixture-engine.mjs');
interface Received {
  headers: Record<string, string | string[] | undefined>;
  body: string;
  answered: number;
}
const received: Received[] = [];
/** Status codes the receiver answers, in order; then 200. */
const script: number[] = [];

beforeAll(async () => {
  redis = await startTestRedis();
  receiver = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const status = script.shift() ?? 200;
      received.push({ headers: req.headers, body, answered: status });
      res.writeHead(status).end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  hookUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
  const common = {
    knownEngines: ['quick'],
    defaultEngine: 'quick',
    webhookSecret: SECRET,
    webhookAllowPrivate: true,
    webhookBackoffMs: 50,
  };
  gw = await startGateway(redis.url, common);
  // A second gateway on the same Redis: each event must still be delivered once.
  gw2 = await startGateway(redis.url, common, gw.storageDir);
  const cfg = join(mkdtempSync(join(tmpdir(), 'pe-wcfg-')), 'worker.json');
  writeFileSync(
    cfg,
    JSON.stringify({
      engines: [{ name: 'quick', command: [process.execPath, fixture, '--mode', 'resize', '--delay-ms', '50'], poolSize: 2 }],
    }),
  );
  worker = await startWorker({ REDIS_URL: redis.url, STORAGE_DIR: gw.storageDir, WORKER_CONFIG: cfg });
  await worker.waitForLog((r) => r.msg === 'worker ready');
});

afterAll(async () => {
  await worker?.stop();
  await gw2?.close();
  await gw?.close();
  await new Promise((r) => receiver?.close(r));
  await redis?.close();
});

function verify(r: Received): WebhookPayload {
  const ts = r.headers[WEBHOOK_HEADERS.timestamp] as string;
  const expected = `sha256=${createHmac('sha256', SECRET).update(`${ts}.${r.body}`).digest('hex')}`;
  expect(r.headers[WEBHOOK_HEADERS.signature]).toBe(expected);
  expect(Math.abs(Date.now() / 1000 - Number(ts))).toBeLessThan(60);
  return JSON.parse(r.body) as WebhookPayload;
}

describe('webhooks', () => {
  it('a job webhook is signed, retried after a receiver error, and delivered once across two gateways', async () => {
    script.push(500);
    const res = await submit(gw.url, await smallPhoto('jpeg', 48), { scale: '1', webhook: hookUrl, webhookEvents: 'completed' });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    const ok = await until(
      'a successful delivery',
      () => received.find((r) => r.answered === 200 && JSON.parse(r.body).job?.id === id),
      30_000,
      50,
    );
    const attempts = received.filter((r) => JSON.parse(r.body).job?.id === id);
    expect(attempts.map((r) => r.answered)).toEqual([500, 200]);
    const payload = verify(ok);
    expect(payload).toMatchObject({ event: 'completed', subject: 'job', id: `job.completed.${id}`, job: { id, status: 'completed' } });
    expect(ok.headers[WEBHOOK_HEADERS.delivery]).toBe(payload.id);
    expect(attempts[0]!.headers[WEBHOOK_HEADERS.delivery]).toBe(payload.id);
    // Give a duplicate the time to show up if it were going to: wait for a later, unrelated delivery instead of sleeping.
    const marker = await submit(gw2.url, await smallPhoto('jpeg', 40), { scale: '1', webhook: hookUrl, webhookEvents: 'completed' });
    const markerId = ((await marker.json()) as { id: string }).id;
    await until('marker delivery', () => received.find((r) => JSON.parse(r.body).job?.id === markerId), 30_000, 50);
    expect(received.filter((r) => JSON.parse(r.body).job?.id === id && r.answered === 200)).toHaveLength(1);
  });

  it('a batch webhook sends progress per item and completed at the end', async () => {
    const form = new FormData();
    form.append('scale', '1');
    form.append('webhook', hookUrl);
    form.append('webhookEvents', 'progress,completed');
    for (let i = 0; i < 2; i++) form.append('images', new Blob([await smallPhoto('jpeg', 40)]), `w${i}.jpg`);
    const res = await fetch(`${gw.url}/v1/batches`, { method: 'POST', body: form });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    const done = await until(
      'batch completed webhook',
      () => received.find((r) => JSON.parse(r.body).id === `batch.completed.${id}`),
      30_000,
      50,
    );
    expect(verify(done)).toMatchObject({
      subject: 'batch',
      event: 'completed',
      batch: { id, status: 'completed', counts: { completed: 2 } },
    });
    const progress = received.filter((r) => (JSON.parse(r.body) as WebhookPayload).id.startsWith(`batch.progress.${id}.`));
    expect(progress).toHaveLength(2);
    for (const p of progress) expect(verify(p).item?.status).toBe('completed');
  });

  it('refuses loopback and private webhook URLs unless the operator allows them', async () => {
    const strict = await startGateway(redis.url, { knownEngines: ['quick'], defaultEngine: 'quick', webhookSecret: SECRET }, gw.storageDir);
    try {
      for (const url of [hookUrl, 'http://10.1.2.3/x', 'http://[::1]:9/x', 'http://169.254.169.254/latest', 'http://localhost:9/x']) {
        const res = await submit(strict.url, await smallPhoto('jpeg', 16), { webhook: url });
        const body = (await res.json()) as Record<string, unknown>;
        expect(res.status, url).toBe(400);
        expect(body, url).toMatchObject({ code: 'WEBHOOK_URL_REFUSED', reason: 'private-address' });
      }
      const bad = await submit(strict.url, await smallPhoto('jpeg', 16), { webhook: 'ftp://example.com/x' });
      expect(await bad.json()).toMatchObject({ code: 'WEBHOOK_URL_REFUSED', reason: 'scheme' });
      const events = await submit(gw.url, await smallPhoto('jpeg', 16), { webhook: hookUrl, webhookEvents: 'done' });
      expect(await events.json()).toMatchObject({ code: 'WEBHOOK_URL_REFUSED', reason: 'invalid-events' });
    } finally {
      await strict.close();
    }
    const unsigned = await startGateway(redis.url, { knownEngines: ['quick'], defaultEngine: 'quick' }, gw.storageDir);
    try {
      const res = await submit(unsigned.url, await smallPhoto('jpeg', 16), { webhook: 'https://example.com/hook' });
      expect(await res.json()).toMatchObject({ code: 'WEBHOOK_URL_REFUSED', reason: 'not-configured' });
    } finally {
      await unsigned.close();
    }
  });
});
