import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostStateErrors, type HostState } from '@photoenhance/contracts';
import { fakeNvidiaSmi, noopGpuEngine, startGpuWorker } from './support/fake-gpu.js';
import { startTestRedis, type TestRedis } from './support/redis.js';
import { smallPhoto } from './support/images.js';
import { loadWorkerConfig } from '../apps/worker/src/config.js';
import { resolveProfiles } from '../apps/worker/src/resolve-profiles.js';
import { FIXTURE_ENGINE, startGateway, submit, until, waitForStatus, type RunningGateway, type RunningWorker } from './support/stack.js';

/**
 * GPU governance through the whole stack: the real worker app (NVIDIA_SMI pointing at a fake nvidia-smi whose output
 * the test writes), a real engine process, the gateway's /v1/system. No GPU is needed.
 */
let redis: TestRedis;
let gw: RunningGateway;
let worker: RunningWorker;
const smi = fakeNvidiaSmi();
const HOST = 'gpu-host-1';
const UUID0 = 'GPU-aaaaaaaa-0000-0000-0000-000000000000';
const UUID1 = 'GPU-bbbbbbbb-1111-1111-1111-111111111111';

function gpus(usedMiB0: number, usedMiB1: number): void {
  smi.gpus([
    { index: 0, uuid: UUID0, totalMiB: 16384, usedMiB: usedMiB0, util: 5 },
    { index: 1, uuid: UUID1, totalMiB: 16384, usedMiB: usedMiB1 },
  ]);
}

async function host(): Promise<HostState | undefined> {
  const hosts = ((await (await fetch(`${gw.url}/v1/system`)).json()) as { hosts: HostState[] }).hosts;
  return hosts.find((h) => h.hostId === HOST);
}

beforeAll(async () => {
  gpus(8192, 1024); // GPU 1 has more free memory
  redis = await startTestRedis();
  gw = await startGateway(redis.url, { knownEngines: ['gpu', 'gpuhard'], jobBackoffMs: 50 });
  worker = await startGpuWorker({
    redisUrl: redis.url,
    storageDir: gw.storageDir,
    hostId: HOST,
    nvidiaSmi: smi.path,
    engines: [noopGpuEngine('3GiB')],
    env: { GPU_MARGIN: '1GiB' },
  });
});

afterAll(async () => {
  await worker?.stop();
  await gw?.close();
  await redis?.close();
  smi.remove();
});

describe('GPU governance through the worker (fake nvidia-smi)', () => {
  it('shows the GPUs in /v1/system and pins the engine to the GPU with the most free memory', async () => {
    const h = await until('the host with a ready gpu engine', async () => {
      const x = await host();
      return x?.processes.some((p) => p.profile === 'gpu' && p.state === 'idle') ? x : undefined;
    });
    expect(h.gpu).toMatchObject({
      state: 'on',
      gpus: [
        { index: 0, uuid: UUID0, name: 'NVIDIA Fake L4', freeBytes: 8192 * 2 ** 20 },
        { index: 1, uuid: UUID1 },
      ],
    });
    // What the worker publishes is what the contract (and the OpenAPI document) states.
    expect(hostStateErrors(h)).toEqual([]);
    const proc = h.processes.find((p) => p.profile === 'gpu')!;
    expect(proc.gpu).toMatchObject({ index: 1, uuid: UUID1 });
    const environ = readFileSync(`/proc/${proc.pid}/environ`, 'utf8').split('\0');
    expect(environ).toContain(`CUDA_VISIBLE_DEVICES=${UUID1}`);
    await worker.waitForLog(
      (r) => typeof r.msg === 'string' && r.msg.startsWith('GPU: on: 0 NVIDIA Fake L4 (16384 MiB), 1 NVIDIA Fake L4'),
    );
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
    expect((held.admission as { detail?: string }).detail).toContain(
      `GPU 1 (NVIDIA Fake L4, ${UUID1}) has 1 GiB free of 16 GiB; engine gpu needs 4 GiB free (expected 3 GiB + margin 1 GiB)`,
    );

    const res = await submit(gw.url, await smallPhoto('jpeg', 64), { engine: 'gpu', scale: '1' });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    const calls = smi.calls();
    await until('more GPU samples while holding', () => smi.calls() >= calls + 6);
    const queued = (await (await fetch(`${gw.url}/v1/jobs/${id}`)).json()) as { status: string };
    expect(queued.status).toBe('queued');

    gpus(8192, 2048);
    const done = await waitForStatus(gw.url, id, ['completed', 'failed']);
    expect(done.status).toBe('completed');
    // (polled: on a loaded machine the 0.9 s heartbeat key can lapse between two reads)
    await until('admitting again', async () => (await host())?.admission.state === 'admitting');
  });
});

describe('hard GPU memory limit through the worker (fake nvidia-smi)', () => {
  const HARD_HOST = 'gpu-host-hard';
  const hardSmi = fakeNvidiaSmi();
  let hard: RunningWorker | undefined;
  const apps = (rows: Array<{ pid: number; usedMiB: number }>): void => hardSmi.apps(rows.map((r) => ({ ...r, uuid: UUID0 })));
  const hardHost = async (): Promise<HostState | undefined> =>
    ((await (await fetch(`${gw.url}/v1/system`)).json()) as { hosts: HostState[] }).hosts.find((h) => h.hostId === HARD_HOST);

  beforeAll(async () => {
    hardSmi.gpus([{ index: 0, uuid: UUID0, totalMiB: 16384, usedMiB: 1024, util: 40 }]);
    // Jobs that take 12 s (room for a loaded machine), so the GPU memory can pass the limit while one runs; no memory retry, so the job fails at once.
    hard = await startGpuWorker({
      redisUrl: redis.url,
      storageDir: gw.storageDir,
      hostId: HARD_HOST,
      nvidiaSmi: hardSmi.path,
      engines: [
        {
          name: 'gpuhard',
          command: [process.execPath, FIXTURE_ENGINE, '--mode', 'sleep', '--delay-ms', '12000'],
          gpus: [0],
          expectedGpuMemoryBytes: '1GiB',
          gpuMemoryLimitBytes: '4GiB',
          memoryRetries: 0,
          expectedMemoryBytes: '64MiB',
        },
      ],
    });
  });
  afterAll(async () => {
    await hard?.stop();
    hardSmi.remove();
  });

  it('kills an engine mid-job above gpuMemoryLimitBytes: the job fails ENGINE_GPU_MEMORY_LIMIT, the engine is replaced, the next job is fine', async () => {
    const res = await submit(gw.url, await smallPhoto('jpeg', 64), { engine: 'gpuhard', scale: '1' });
    const { id } = (await res.json()) as { id: string };
    const busy = await until('the gpuhard engine busy with the job', async () =>
      (await hardHost())?.processes.find((p) => p.profile === 'gpuhard' && p.state === 'busy'),
    );
    const pid = busy.pid!;
    // 3.5 GiB: over the soft mark (3 GiB) but under the limit: not killed mid-job
    apps([{ pid, usedMiB: 3584 }]);
    const over = await until('the 3.5 GiB sample in /v1/system', async () =>
      (await hardHost())?.processes.find((p) => p.pid === pid && p.gpu?.usedBytes === 3584 * 2 ** 20),
    );
    expect(over.state).toBe('busy');
    // 5 GiB: over the 4 GiB limit
    apps([{ pid, usedMiB: 5120 }]);
    const failed = (await waitForStatus(gw.url, id, ['completed', 'failed'])) as {
      status: string;
      error?: { code: string; message: string };
    };
    expect(failed.status).toBe('failed');
    expect(failed.error?.code).toBe('ENGINE_GPU_MEMORY_LIMIT');
    expect(failed.error?.message).toMatch(
      /held 5 GiB of GPU memory on GPU 0, over its GPU memory limit 4 GiB \(gpuMemoryLimitBytes, hard\); killed mid-job/,
    );
    const after = await until('a replacement engine', async () => {
      const h = await hardHost();
      return h?.processes.some((p) => p.profile === 'gpuhard' && p.pid !== pid && p.state === 'idle') ? h : undefined;
    });
    expect(after.recycles['gpu-memory-limit']).toBe(1);
    expect(after.recycleEvents?.find((e) => e.reason === 'gpu-memory-limit')).toMatchObject({
      pid,
      detail: expect.stringContaining('GPU memory 5 GiB > limit 4 GiB'),
    });

    const next = await submit(gw.url, await smallPhoto('jpeg', 64), { engine: 'gpuhard', scale: '1' });
    const { id: id2 } = (await next.json()) as { id: string };
    const done = (await waitForStatus(gw.url, id2, ['completed', 'failed'])) as { status: string; result?: { engine?: { pid?: number } } };
    expect(done.status).toBe('completed');
    expect(done.result?.engine?.pid).not.toBe(pid);
  });
});

describe('GPU settings', () => {
  it('reads GPU_GOVERNANCE, NVIDIA_SMI, GPU_MARGIN and the GPU profile fields, and names a bad one', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pe-wcfg-'));
    const file = join(dir, 'worker.json');
    writeFileSync(
      file,
      JSON.stringify({
        engines: [
          {
            name: 'g',
            command: ['/bin/true'],
            gpus: [0, 1],
            expectedGpuMemoryBytes: '2GiB',
            gpuFloorBytes: '3GiB',
            gpuMemoryLimitBytes: '12GiB',
            gpuMemoryLimitMode: 'soft',
          },
        ],
        run: ['g'],
      }),
    );
    const c = loadWorkerConfig({
      env: {
        REDIS_URL: '/r.sock',
        WORKER_CONFIG: file,
        GPU_GOVERNANCE: 'off',
        NVIDIA_SMI: '/opt/nvidia/bin/nvidia-smi',
        GPU_MARGIN: '1GiB',
      },
    });
    expect(c).toMatchObject({ gpu: 'off', nvidiaSmi: '/opt/nvidia/bin/nvidia-smi', gpuMarginBytes: 2 ** 30 });
    expect(resolveProfiles(c)[0]).toMatchObject({
      gpus: [0, 1],
      expectedGpuMemoryBytes: 2 * 2 ** 30,
      gpuFloorBytes: 3 * 2 ** 30,
      gpuMemoryLimitBytes: 12 * 2 ** 30,
      gpuMemoryLimitMode: 'soft',
    });
    expect(() => loadWorkerConfig({ env: { REDIS_URL: '/r.sock', GPU_MARGIN: 'lots' } })).toThrow(/GPU_MARGIN/);
    expect(() => loadWorkerConfig({ env: { REDIS_URL: '/r.sock', GPU_GOVERNANCE: 'maybe' } })).toThrow(/GPU_GOVERNANCE/);
    writeFileSync(file, JSON.stringify({ engines: [{ name: 'g', command: ['/bin/true'], gpus: [-1] }], run: ['g'] }));
    expect(() => loadWorkerConfig({ env: { REDIS_URL: '/r.sock', WORKER_CONFIG: file } })).toThrow(/gpus/);
    writeFileSync(
      file,
      JSON.stringify({ engines: [{ name: 'g', command: ['/bin/true'], gpus: [0], gpuMemoryLimitMode: 'sometimes' }], run: ['g'] }),
    );
    expect(() => loadWorkerConfig({ env: { REDIS_URL: '/r.sock', WORKER_CONFIG: file } })).toThrow(/gpuMemoryLimitMode/);
  });
});
