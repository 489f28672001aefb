import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HostState } from '@photoenhance/contracts';
import { fakeNvidiaSmi, mib, noopGpuEngine, startGpuWorker } from './support/fake-gpu.js';
import { parsePrometheusText, sampleValue, type PromFamily } from './support/prometheus.js';
import { startTestRedis, type TestRedis } from './support/redis.js';
import { startGateway, until, type RunningGateway, type RunningWorker } from './support/stack.js';

/**
 * The GPU part of GET /metrics: a real worker whose GPUs come from the fake nvidia-smi, a real engine process, the
 * gateway's Prometheus text parsed strictly. Each GPU's free/total memory and utilisation, what each engine process
 * holds on which GPU, and the GPU_MEMORY_LOW hold.
 */
let redis: TestRedis;
let gw: RunningGateway;
let worker: RunningWorker;
const smi = fakeNvidiaSmi();
const HOST = 'metrics-gpu-host';
const UUID0 = 'GPU-cccccccc-0000-0000-0000-000000000000';
const UUID1 = 'GPU-dddddddd-1111-1111-1111-111111111111';
const table = (used1: number) => [
  { index: 0, uuid: UUID0, totalMiB: 24576, usedMiB: 20480, util: 97, name: 'NVIDIA Fake L4' },
  { index: 1, uuid: UUID1, totalMiB: 16384, usedMiB: used1, util: '[N/A]', name: 'NVIDIA Fake T4' },
];

async function scrape(): Promise<Map<string, PromFamily>> {
  const res = await fetch(`${gw.url}/metrics`);
  expect(res.status).toBe(200);
  return parsePrometheusText(await res.text());
}
const host = async (): Promise<HostState | undefined> =>
  ((await (await fetch(`${gw.url}/v1/system`)).json()) as { hosts: HostState[] }).hosts.find((h) => h.hostId === HOST);

beforeAll(async () => {
  smi.gpus(table(2048));
  redis = await startTestRedis();
  gw = await startGateway(redis.url, { knownEngines: ['gpu'], dashboardSampleMs: 200 });
  worker = await startGpuWorker({
    redisUrl: redis.url,
    storageDir: gw.storageDir,
    hostId: HOST,
    nvidiaSmi: smi.path,
    engines: [noopGpuEngine('2GiB')],
    env: { GPU_MARGIN: '512MiB' },
  });
});

afterAll(async () => {
  await worker?.stop();
  await gw?.close();
  await redis?.close();
  smi.remove();
});

describe('GPU metrics', () => {
  it('exports each GPU (free, total, utilisation), the sampler, and the GPU memory each engine process holds', async () => {
    const proc = await until('a ready gpu engine', async () =>
      (await host())?.processes.find((p) => p.profile === 'gpu' && p.state === 'idle' && p.gpu),
    );
    expect(proc.gpu?.index).toBe(1); // the GPU with the most free memory
    smi.apps([{ pid: proc.pid!, uuid: UUID1, usedMiB: 1536 }]);
    const m = await until('the engine GPU memory in /metrics', async () => {
      const x = await scrape();
      return sampleValue(x, 'pe_engine_gpu_memory_bytes', 'pe_engine_gpu_memory_bytes', { host: HOST, engine: 'gpu' }) === mib(1536)
        ? x
        : undefined;
    });
    expect(m.get('pe_engine_gpu_memory_bytes')?.samples.find((s) => s.labels.host === HOST)?.labels).toEqual({
      host: HOST,
      engine: 'gpu',
      pid: String(proc.pid),
      gpu: '1',
    });
    expect(sampleValue(m, 'pe_gpu_memory_free_bytes', 'pe_gpu_memory_free_bytes', { host: HOST, gpu: '0', name: 'NVIDIA Fake L4' })).toBe(
      mib(4096),
    );
    expect(sampleValue(m, 'pe_gpu_memory_free_bytes', 'pe_gpu_memory_free_bytes', { host: HOST, gpu: '1' })).toBe(mib(14336));
    expect(sampleValue(m, 'pe_gpu_memory_total_bytes', 'pe_gpu_memory_total_bytes', { host: HOST, gpu: '0' })).toBe(mib(24576));
    expect(sampleValue(m, 'pe_gpu_utilization_ratio', 'pe_gpu_utilization_ratio', { host: HOST, gpu: '0' })).toBe(0.97);
    // "[N/A]" utilisation: no sample rather than a made-up 0
    expect(sampleValue(m, 'pe_gpu_utilization_ratio', 'pe_gpu_utilization_ratio', { host: HOST, gpu: '1' })).toBeUndefined();
    expect(sampleValue(m, 'pe_gpu_sampling_up', 'pe_gpu_sampling_up', { host: HOST })).toBe(1);
    expect(sampleValue(m, 'pe_gpu_sample_seconds', 'pe_gpu_sample_seconds', { host: HOST })).toBeGreaterThan(0);
    for (const f of ['pe_gpu_memory_free_bytes', 'pe_gpu_memory_total_bytes', 'pe_gpu_utilization_ratio', 'pe_engine_gpu_memory_bytes'])
      expect(m.get(f)?.type, f).toBe('gauge');
  });

  it('counts the GPU_MEMORY_LOW hold and shows it in pe_admission_holding', async () => {
    smi.gpus(table(15872)); // GPU 1: 512 MiB free, below the 2.5 GiB floor
    const m = await until('holding with GPU_MEMORY_LOW in /metrics', async () => {
      const x = await scrape();
      return sampleValue(x, 'pe_admission_holding', 'pe_admission_holding', { host: HOST, reason: 'GPU_MEMORY_LOW' }) === 1 ? x : undefined;
    });
    expect(sampleValue(m, 'pe_admission_holds_total', 'pe_admission_holds_total', { host: HOST, reason: 'GPU_MEMORY_LOW' })).toBe(1);
    expect(sampleValue(m, 'pe_gpu_memory_free_bytes', 'pe_gpu_memory_free_bytes', { host: HOST, gpu: '1' })).toBe(mib(512));
    smi.gpus(table(2048));
    // admitting: the host's one sample reads 0 with an empty reason
    await until(
      'admitting again',
      async () => sampleValue(await scrape(), 'pe_admission_holding', 'pe_admission_holding', { host: HOST, reason: '' }) === 0,
    );
  });
});
