import { describe, expect, it } from 'vitest';
import type { EngineProcessState, GpuInfo, HostGpus } from '@photoenhance/contracts';
import { autoBgTile, chooseBgTile } from '../src/index.js';

const GiB = 2 ** 30;
const gpu = (index: number, freeGiB: number): GpuInfo => ({
  index,
  uuid: `GPU-${index}`,
  name: 'Fake',
  totalBytes: 16 * GiB,
  usedBytes: (16 - freeGiB) * GiB,
  freeBytes: freeGiB * GiB,
});
const on = (...gpus: GpuInfo[]): HostGpus => ({ state: 'on', reason: 'ok', gpus });
const proc = (profile: string, g: GpuInfo): EngineProcessState => ({
  profile,
  pid: 1,
  state: 'idle',
  rssBytes: 0,
  limitBytes: 0,
  peakBytes: 0,
  jobsDone: 0,
  startedAt: 0,
  uptimeMs: 0,
  enforcement: 'watchdog',
  gpu: { index: g.index, uuid: g.uuid, usedBytes: 0 },
});
const base = { profile: 'gfpgan', gpus: 'all' as const, width: 4000, height: 3000, fallback: 400 };

describe('autoBgTile', () => {
  it('sizes for the least free GPU holding this engine (any of its processes may take the job)', () => {
    const a = gpu(0, 2);
    const b = gpu(1, 12);
    const c = autoBgTile({ ...base, gpu: on(a, b), processes: [proc('gfpgan', a), proc('gfpgan', b), proc('other', gpu(2, 0.1))] });
    expect(c).toMatchObject({ basis: 'gpu', gpu: 0, freeBytes: 2 * GiB, bgTile: chooseBgTile(2 * GiB, 4000, 3000)!.tile });
  });

  it('with no process yet: the GPU a new engine would go to (most free among those allowed)', () => {
    const c = autoBgTile({ ...base, gpus: [0, 1], gpu: on(gpu(0, 1), gpu(1, 3), gpu(2, 15)), processes: [] });
    expect(c).toMatchObject({ gpu: 1, bgTile: chooseBgTile(3 * GiB, 4000, 3000)!.tile });
  });

  it('falls back without GPU figures: no sample, governance off or failing, a non-GPU engine', () => {
    for (const g of [
      undefined,
      { state: 'off', reason: 'no nvidia-smi', gpus: [] },
      { state: 'error', reason: 'driver', gpus: [gpu(0, 8)] },
    ] as const) {
      expect(autoBgTile({ ...base, gpu: g as HostGpus | undefined, processes: [] })).toEqual({ bgTile: 400, basis: 'no-gpu' });
    }
    expect(autoBgTile({ ...base, gpus: undefined, gpu: on(gpu(0, 8)), processes: [] })).toEqual({ bgTile: 400, basis: 'no-gpu' });
  });

  it('untiled when the whole photo fits; the smallest tile, marked tight, when nothing fits', () => {
    expect(autoBgTile({ ...base, width: 640, height: 480, gpu: on(gpu(0, 8)), processes: [] }).bgTile).toBe(0);
    expect(autoBgTile({ ...base, gpu: on(gpu(0, 0.2)), processes: [] })).toMatchObject({ bgTile: 64, tight: true });
  });
});
