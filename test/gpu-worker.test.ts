import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HostState } from '@photoenhance/contracts';
import { startTestRedis, type TestRedis } from './support/redis.js';
import { smallPhoto } from './support/images.js';
import { loadWorkerConfig } from '../apps/worker/src/config.js';
import { resolveProfiles } from '../apps/worker/src/resolve-profiles.js';
import { FIXTURE_ENGINE, REPO, startGateway, startWorker, submit, until, waitForStatus, type RunningGateway, type RunningWorker } from './support/stack.js';

/**
 * GPU governance through the whole stack: the real worker app (NVIDIA_SMI pointing at a fake nvidia-smi whose output
 * the test writes), a real engine process, the gateway's /v1/system. No GPU is needed.
 */
let redis: TestRedis;
let gw: RunningGateway;
let worker: RunningWorker;
let smiDir = '';
const HOST = 'gpu-host-1';
const UUID0 = 'GPU-aaaaaaaa-0000-0000-0000-000000000000';
const UUID1 = 'GPU-bbbbbbbb-1111-1111-1111-111111111111';

function gpus(usedMiB0: number, usedMiB1: number): void {
  const text = `0, ${UUID0}, 16384, ${usedMiB0}, ${16384 - usedMiB0}, 5, NVIDIA Fake L4\n1, ${UUID1}, 16384, ${usedMiB1}, ${16384 - usedMiB1}, 0, NVIDIA Fake L4\n`;
  writeFileSync(join(smiDir, 'gpus.tmp'), text);
  copyFileSync(join(smiDir, 'gpus.tmp'), join(smiDir, 'gpus.csv'));
}

async function host(): Promise<HostState | undefined> {
  const hosts = ((await (await fetch(`${gw.url}/v1/system`)).json()) as { hosts: HostState[] }).hosts;
  return hosts.find((h) => h.hostId === HOST);
}

beforeAll(async () => {
  smiDir = mkdtempSync(join(tmpdir(), 'pe-gpu-smi-'));
  copyFileSync(join(REPO, 'packages/governor/test/fixtures/fake-nvidia-smi'), join(smiDir, 'nvidia-smi'));
  writeFileSync(join(smiDir, 'apps.csv'), '');
  gpus(8192, 1024); // GPU 1 has more free memory
  redis = await startTestRedis();
  gw = await startGateway(redis.url, { knownEngines: ['gpu'], jobBackoffMs: 50 });
  const cfg = join(mkdtempSync(join(tmpdir(), 'pe-wcfg-')), 'worker.json');
  writeFileSync(cfg, JSON.stringify({
    engines: [{ name: 'gpu', command: [process.execPath, FIXTURE_ENGINE, '--mode', 'noop'], gpus: 'all', expectedGpuMemoryBytes: '3GiB', expectedMemoryBytes: '64MiB' }],
    run: ['gpu'],
  }));
  worker = await startWorker({ REDIS_URL: redis.url, STORAGE_DIR: gw.storageDir, WORKER_CONFIG: cfg, HOST_ID: HOST, ADMISSION_CHECK_MS: '200', NVIDIA_SMI: join(smiDir, 'nvidia-smi'), GPU_MARGIN: '1GiB' });
  await worker.waitForLog((r) => r.msg === 'worker ready');
});

afterAll(async () => {
  await worker?.stop();
  await gw?.close();
  await redis?.close();
});

describe('GPU governance through the worker (fake nvidia-smi)', () => {
  it('shows the GPUs in /v1/system and pins the engine to the GPU with the most free memory', async () => {
    const h = await until('the host with a ready gpu engine', async () => {
      const x = await host();
      return x?.processes.some((p) => p.profile === 'gpu' && p.state === 'idle') ? x : undefined;
    });
    expect(h.gpu).toMatchObject({ state: 'on', gpus: [{ index: 0, uuid: UUID0, name: 'NVIDIA Fake L4', freeBytes: 8192 * 2 ** 20 }, { index: 1, uuid: UUID1 }] });
    const proc = h.processes.find((p) => p.profile === 'gpu')!;
    expect(proc.gpu).toMatchObject({ index: 1, uuid: UUID1 });
    const environ = readFileSync(`/proc/${proc.pid}/environ`, 'utf8').split('\0');
    expect(environ).toContain(`CUDA_VISIBLE_DEVICES=${UUID1}`);
    await worker.waitForLog((r) => typeof r.msg === 'string' && r.msg.startsWith('GPU: on: 0 NVIDIA Fake L4 (16384 MiB), 1 NVIDIA Fake L4'));
  });

  it('holds with GPU_MEMORY_LOW while its GPU is full (the job stays queued), then takes the job', async () => {
    // GPU 1 fills up: 1 GiB free, below the 4 GiB floor (3 GiB expected + 1 GiB margin)
    gpus(8192, 15360);
    const held = await until('host holding', async () => {
      const x = await host();
      return x?.admission.state === 'holding' ? x : undefined;
    });
    expect(held.admission.reason).toBe('GPU_MEMORY_LOW');
    expect(held.transitions.at(-1)).toMatchObject({ state: 'holding', reason: 'GPU_MEMORY_LOW' });
    expect((held.admission as { detail?: string }).detail).toContain(`GPU 1 (NVIDIA Fake L4, ${UUID1}) has 1 GiB free of 16 GiB; engine gpu needs 4 GiB free (expected 3 GiB + margin 1 GiB)`);

    const res = await submit(gw.url, await smallPhoto('jpeg', 64), { engine: 'gpu', scale: '1' });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    const calls = readFileSync(join(smiDir, 'calls.log'), 'utf8').split('\n').length;
    await until('more GPU samples while holding', () => readFileSync(join(smiDir, 'calls.log'), 'utf8').split('\n').length >= calls + 6);
    const queued = (await (await fetch(`${gw.url}/v1/jobs/${id}`)).json()) as { status: string };
    expect(queued.status).toBe('queued');

    gpus(8192, 2048);
    const done = await waitForStatus(gw.url, id, ['completed', 'failed']);
    expect(done.status).toBe('completed');
    expect((await host())?.admission.state).toBe('admitting');
  });
});

describe('GPU settings', () => {
  it('reads GPU_GOVERNANCE, NVIDIA_SMI, GPU_MARGIN and the GPU profile fields, and names a bad one', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pe-wcfg-'));
    const file = join(dir, 'worker.json');
    writeFileSync(file, JSON.stringify({ engines: [{ name: 'g', command: ['/bin/true'], gpus: [0, 1], expectedGpuMemoryBytes: '2GiB', gpuFloorBytes: '3GiB', gpuMemoryLimitBytes: '12GiB' }], run: ['g'] }));
    const c = loadWorkerConfig({ env: { REDIS_URL: '/r.sock', WORKER_CONFIG: file, GPU_GOVERNANCE: 'off', NVIDIA_SMI: '/opt/nvidia/bin/nvidia-smi', GPU_MARGIN: '1GiB' } });
    expect(c).toMatchObject({ gpu: 'off', nvidiaSmi: '/opt/nvidia/bin/nvidia-smi', gpuMarginBytes: 2 ** 30 });
    expect(resolveProfiles(c)[0]).toMatchObject({ gpus: [0, 1], expectedGpuMemoryBytes: 2 * 2 ** 30, gpuFloorBytes: 3 * 2 ** 30, gpuMemoryLimitBytes: 12 * 2 ** 30 });
    expect(() => loadWorkerConfig({ env: { REDIS_URL: '/r.sock', GPU_MARGIN: 'lots' } })).toThrow(/GPU_MARGIN/);
    expect(() => loadWorkerConfig({ env: { REDIS_URL: '/r.sock', GPU_GOVERNANCE: 'maybe' } })).toThrow(/GPU_GOVERNANCE/);
    writeFileSync(file, JSON.stringify({ engines: [{ name: 'g', command: ['/bin/true'], gpus: [-1] }], run: ['g'] }));
    expect(() => loadWorkerConfig({ env: { REDIS_URL: '/r.sock', WORKER_CONFIG: file } })).toThrow(/gpus/);
  });
});
