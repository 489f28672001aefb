import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { smallPhoto } from './support/images.js';
import { parsePrometheusText, sampleValue, sumValues, type PromFamily } from './support/prometheus.js';
import { startTestRedis, type TestRedis } from './support/redis.js';
import { REPO, startGateway, startWorker, submit, until, waitForStatus, type RunningGateway, type RunningWorker } from './support/stack.js';

/**
 * GET /metrics scraped and parsed with a strict Prometheus text parser while real jobs run on a real worker with
 * fixture engines. Two gateways share the Redis: each job outcome is counted by exactly one of them.
 */
let redis: TestRedis;
let gw: RunningGateway;
let gw2: RunningGateway;
let worker: RunningWorker;
const fixture = join(REPO, 'test/fixtures/engines/fixture-engine.mjs');
const HOST = 'metrics-host';

async function scrape(url: string): Promise<Map<string, PromFamily>> {
  const res = await fetch(`${url}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return parsePrometheusText(await res.text());
}

beforeAll(async () => {
  redis = await startTestRedis();
  const cfg = { knownEngines: ['fast', 'crash'], jobAttempts: 1, dashboardSampleMs: 200 };
  gw = await startGateway(redis.url, cfg);
  gw2 = await startGateway(redis.url, cfg, gw.storageDir);
  const file = join(mkdtempSync(join(tmpdir(), 'pe-wcfg-')), 'worker.json');
  writeFileSync(
    file,
    JSON.stringify({
      engines: [
        { name: 'fast', command: [process.execPath, fixture, '--mode', 'noop'] },
        { name: 'crash', command: [process.execPath, fixture, '--mode', 'crash'] },
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
});

afterAll(async () => {
  await worker?.stop();
  await gw2?.close();
  await gw?.close();
  await redis?.close();
});

describe('GET /metrics', () => {
  it('is valid Prometheus text with conventional names', async () => {
    const m = await scrape(gw.url);
    for (const f of m.values()) {
      expect(f.name).toMatch(/^pe_/);
      expect(f.help.length, f.name).toBeGreaterThan(0);
    }
    for (const name of [
      'pe_queue_jobs',
      'pe_job_wait_seconds',
      'pe_job_run_seconds',
      'pe_job_total_seconds',
      'pe_jobs_finished_total',
      'pe_engine_rss_bytes',
      'pe_engine_memory_limit_bytes',
      'pe_engine_recycles_total',
      'pe_admission_holds_total',
      'pe_admission_hold_duration_seconds',
      'pe_admission_holding',
      'pe_host_memory_available_bytes',
      'pe_sse_clients',
    ]) {
      expect(m.has(name), name).toBe(true);
    }
    expect(m.get('pe_jobs_finished_total')!.type).toBe('counter');
    expect(m.get('pe_job_run_seconds')!.type).toBe('histogram');
  });

  it('counts finished jobs by outcome and error code, once across gateways, with duration histograms', async () => {
    const photo = await smallPhoto('jpeg', 96);
    const ids: string[] = [];
    for (let i = 0; i < 3; i++)
      ids.push(((await (await submit(gw.url, photo, { engine: 'fast', scale: '1' })).json()) as { id: string }).id);
    const bad = ((await (await submit(gw.url, photo, { engine: 'crash', scale: '1' })).json()) as { id: string }).id;
    for (const id of ids) expect((await waitForStatus(gw.url, id, ['completed', 'failed'])).status).toBe('completed');
    const failed = await waitForStatus(gw.url, bad, ['completed', 'failed']);
    expect(failed).toMatchObject({ status: 'failed', error: { code: 'ENGINE_CRASHED' } });

    const both = async (family: string, name: string, labels: Record<string, string>): Promise<number> =>
      sumValues(await scrape(gw.url), family, name, labels) + sumValues(await scrape(gw2.url), family, name, labels);
    await until(
      'both gateways to have counted the finished jobs',
      async () =>
        (await both('pe_jobs_finished_total', 'pe_jobs_finished_total', { engine: 'fast', outcome: 'completed' })) === 3 &&
        (await both('pe_jobs_finished_total', 'pe_jobs_finished_total', { engine: 'crash', outcome: 'failed', code: 'ENGINE_CRASHED' })) ===
          1,
      20_000,
    );
    // Settled: still exactly once each, however many gateways saw the events.
    expect(await both('pe_jobs_finished_total', 'pe_jobs_finished_total', { engine: 'fast', outcome: 'completed', code: '' })).toBe(3);
    expect(await both('pe_job_run_seconds', 'pe_job_run_seconds_count', { engine: 'fast' })).toBe(3);
    expect(await both('pe_job_wait_seconds', 'pe_job_wait_seconds_count', { engine: 'fast' })).toBe(3);
    expect(await both('pe_job_total_seconds', 'pe_job_total_seconds_count', { engine: 'crash', outcome: 'failed' })).toBe(1);

    // Depth is read from Redis at scrape time: every gateway reports the same.
    const m = await scrape(gw.url);
    expect(sampleValue(m, 'pe_queue_jobs', 'pe_queue_jobs', { engine: 'fast', state: 'completed' })).toBe(3);
    expect(sampleValue(m, 'pe_queue_jobs', 'pe_queue_jobs', { engine: 'crash', state: 'failed' })).toBe(1);
    expect(sampleValue(m, 'pe_queue_jobs', 'pe_queue_jobs', { engine: 'fast', state: 'waiting' })).toBe(0);
  });

  it('reports engine memory, host memory and SSE clients from heartbeats and streams', async () => {
    const m = await until('a fast engine process in the metrics', async () => {
      const x = await scrape(gw.url);
      return x.get('pe_engine_rss_bytes')!.samples.some((s) => s.labels.host === HOST && s.labels.engine === 'fast' && s.value > 0)
        ? x
        : undefined;
    });
    expect(sampleValue(m, 'pe_engine_memory_limit_bytes', 'pe_engine_memory_limit_bytes', { host: HOST, engine: 'fast' })).toBeGreaterThan(
      0,
    );
    expect(sampleValue(m, 'pe_host_memory_available_bytes', 'pe_host_memory_available_bytes', { host: HOST })).toBeGreaterThan(0);
    expect(sampleValue(m, 'pe_admission_holding', 'pe_admission_holding', { host: HOST })).toBe(0);

    const ctrl = new AbortController();
    const res = await fetch(`${gw.url}/dashboard/api/events`, { signal: ctrl.signal });
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    try {
      await until(
        'one dashboard SSE client',
        async () => sampleValue(await scrape(gw.url), 'pe_sse_clients', 'pe_sse_clients', { stream: 'dashboard' }) === 1,
      );
    } finally {
      ctrl.abort();
    }
    await until(
      'no dashboard SSE client',
      async () => sampleValue(await scrape(gw.url), 'pe_sse_clients', 'pe_sse_clients', { stream: 'dashboard' }) === 0,
    );
  });

  it('counts admission holds and their duration', async () => {
    const put = (body: Record<string, number>) =>
      fetch(`${gw.url}/v1/system/hosts/${HOST}/admission`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    // Let the observer see the host once before the change, so the hold is a live change.
    await until(
      'the host in the metrics',
      async () => sampleValue(await scrape(gw.url), 'pe_admission_holding', 'pe_admission_holding', { host: HOST }) === 0,
    );
    expect((await put({ minAvailableBytes: 1024 ** 5 })).status).toBe(202);
    await until('a hold counted', async () => {
      const m = await scrape(gw.url);
      return (
        sampleValue(m, 'pe_admission_holds_total', 'pe_admission_holds_total', { host: HOST, reason: 'MEMORY_AVAILABLE_LOW' }) === 1 &&
        sampleValue(m, 'pe_admission_holding', 'pe_admission_holding', { host: HOST, reason: 'MEMORY_AVAILABLE_LOW' }) === 1
      );
    });
    expect((await put({ minAvailableBytes: 0 })).status).toBe(202);
    const m = await until('the hold duration observed', async () => {
      const x = await scrape(gw.url);
      return sampleValue(x, 'pe_admission_hold_duration_seconds', 'pe_admission_hold_duration_seconds_count', { host: HOST }) === 1
        ? x
        : undefined;
    });
    expect(sampleValue(m, 'pe_admission_hold_duration_seconds', 'pe_admission_hold_duration_seconds_sum', { host: HOST })).toBeGreaterThan(
      0,
    );
    expect(sampleValue(m, 'pe_admission_holding', 'pe_admission_holding', { host: HOST })).toBe(0);
  });
});
