import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HostState } from '@photoenhance/contracts';
import { startTestRedis, type TestRedis } from './support/redis.js';
import { smallPhoto } from './support/images.js';
import { REPO, startGateway, startWorker, submit, until, waitForStatus, type RunningGateway, type RunningWorker } from './support/stack.js';

/**
 * The governor through the whole stack: the real worker app, real engine processes, real HTTP.
 * (The governor's own suite, packages/governor/test, covers each mechanism in depth.)
 */
let redis: TestRedis;
let gw: RunningGateway;
let worker: RunningWorker;
const fixtures = join(REPO, 'packages/governor/test/fixtures');
const HOST = 'test-host-1';

async function system(): Promise<HostState[]> {
  return ((await (await fetch(`${gw.url}/v1/system`)).json()) as { hosts: HostState[] }).hosts;
}

async function setAdmission(body: Record<string, number>): Promise<Response> {
  return fetch(`${gw.url}/v1/system/hosts/${HOST}/admission`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
}

beforeAll(async () => {
  redis = await startTestRedis();
  gw = await startGateway(redis.url, { knownEngines: ['classic', 'grow'], jobBackoffMs: 50 });
  const cfg = join(mkdtempSync(join(tmpdir(), 'pe-wcfg-')), 'worker.json');
  writeFileSync(
    cfg,
    JSON.stringify({
      engines: [
        { name: 'classic' },
        // Grows at 1.5 GB/s until stopped; 256 MiB limit.
        {
          name: 'grow',
          command: [process.execPath, join(fixtures, 'grow.mjs')],
          memoryLimitBytes: '256MiB',
          expectedMemoryBytes: '64MiB',
          memoryRetries: 1,
        },
      ],
    }),
  );
  worker = await startWorker({
    REDIS_URL: redis.url,
    STORAGE_DIR: gw.storageDir,
    WORKER_CONFIG: cfg,
    HOST_ID: HOST,
    ADMISSION_CHECK_MS: '100',
  });
  await worker.waitForLog((r) => r.msg === 'worker ready');
});

afterAll(async () => {
  await worker?.stop();
  await gw?.close();
  await redis?.close();
});

describe('GET /v1/system', () => {
  it('shows the host, its admission state, memory, enforcement and each engine process', async () => {
    const hosts = await until('the host with a ready classic engine', async () => {
      const h = await system();
      return h.length === 1 && h[0]!.processes.some((p) => p.profile === 'classic' && p.state === 'idle') ? h : undefined;
    });
    const host = hosts[0]!;
    expect(host).toMatchObject({ hostId: HOST, admission: { state: 'admitting' }, enforcement: { mode: 'watchdog' } });
    expect(host.memory.totalBytes).toBeGreaterThan(0);
    expect(host.memory.availableBytes).toBeGreaterThan(0);
    expect(host.enforcement.reason.length).toBeGreaterThan(0);
    const classic = host.processes.find((p) => p.profile === 'classic')!;
    expect(classic.pid).toBeGreaterThan(0);
    expect(classic.limitBytes).toBeGreaterThan(0);
    expect(host.engines.map((e) => e.name).sort()).toEqual(['classic', 'grow']);
  });
});

describe('admission', () => {
  it('holds (no job taken, jobs stay queued) while the floor is above available memory, and resumes when lowered', async () => {
    const floor = 1024 ** 5; // 1 PiB: no host has that much available
    expect((await setAdmission({ minAvailableBytes: floor })).status).toBe(202);
    const held = await until('host holding', async () => {
      const h = (await system())[0];
      return h?.admission.state === 'holding' ? h : undefined;
    });
    expect(held.admission.reason).toBe('MEMORY_AVAILABLE_LOW');
    expect(held.transitions.at(-1)).toMatchObject({ state: 'holding', reason: 'MEMORY_AVAILABLE_LOW' });

    const res = await submit(gw.url, await smallPhoto('jpeg', 120), { scale: '1' });
    const { id } = (await res.json()) as { id: string };
    // Several admission checks pass while it waits; the job must still be queued, never active or failed.
    const checksBefore = held.transitions.length;
    await until('a few re-checks', async () => ((await system())[0]!.updatedAt > held.updatedAt + 500 ? true : undefined));
    const view = (await (await fetch(`${gw.url}/v1/jobs/${id}`)).json()) as { status: string; attempts: number };
    expect(view.status).toBe('queued');
    expect((await system())[0]!.transitions.length).toBe(checksBefore);

    expect((await setAdmission({ minAvailableBytes: 0 })).status).toBe(202);
    const done = await waitForStatus(gw.url, id, ['completed', 'failed']);
    expect(done.status).toBe('completed');
    await until('host admitting again', async () => (await system())[0]!.admission.state === 'admitting');
  });

  it('refuses bad thresholds and unknown hosts with a problem', async () => {
    const bad = await setAdmission({ maxUsedRatio: 3 });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { code: string }).code).toBe('INVALID_REQUEST');
    const none = await fetch(`${gw.url}/v1/system/hosts/nope/admission`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: '{"maxUsedRatio":0.9}',
    });
    expect(none.status).toBe(404);
  });
});

describe('memory limit', () => {
  it('fails a job that blows the limit with ENGINE_MEMORY_LIMIT after one memory retry, replaces the engine, and keeps serving', async () => {
    const total = (h: HostState): number => Object.values(h.recycles).reduce((a, b) => a + b, 0);
    const before = total((await system())[0]!);
    const res = await submit(gw.url, await smallPhoto('jpeg', 64), { engine: 'grow', scale: '1' });
    const { id } = (await res.json()) as { id: string };
    const view = (await waitForStatus(gw.url, id, ['failed', 'completed'], 60_000)) as {
      status: string;
      error: { code: string; message: string };
      attempts: number;
    };
    expect(view.status).toBe('failed');
    expect(view.error.code).toBe('ENGINE_MEMORY_LIMIT');
    expect(view.error.message).toMatch(/256 MiB/);
    expect(view.error.message).toMatch(/peak/);
    // 1 memory retry: two runs in all, and they did not spend the ordinary attempts budget.
    expect(view.error.message).toMatch(/after 2 memory-limit failure/);
    const host = await until('recycle counted', async () => {
      const h = (await system())[0]!;
      return total(h) >= before + 2 ? h : undefined;
    });
    expect(host.processes.every((p) => p.rssBytes < 256 * 1024 ** 2 + 128 * 1024 ** 2)).toBe(true);
    const ok = await submit(gw.url, await smallPhoto('jpeg', 120), { scale: '1' });
    expect((await waitForStatus(gw.url, ((await ok.json()) as { id: string }).id, ['completed', 'failed'])).status).toBe('completed');
  });
});
