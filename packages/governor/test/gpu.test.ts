/**
 * GPU admission and placement, driven by a fake nvidia-smi (test/fixtures/fake-nvidia-smi, a shell script whose
 * output each test writes: GPUs, memory filling, the driver failing, malformed output) and real engine processes
 * (the `normal` fixture engine). No mocking inside the process: the governor runs the fake as it would run
 * nvidia-smi, through its path.
 */
import { copyFileSync, mkdtempSync, readFileSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import type { AdmissionState } from '@photoenhance/contracts';
import { GpuParseError, GpuSampler, parseComputeApps, parseGpuCsv } from '../src/index.js';
import { FIXTURES, fixture, governor, MiB, req, waitFor } from './helpers.js';

const GiB = 1024 * MiB;
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A fake nvidia-smi in a folder of its own, and functions that script what it prints. */
function fakeSmi() {
  const dir = mkdtempSync(join(tmpdir(), 'pe-fake-smi-'));
  dirs.push(dir);
  const path = join(dir, 'nvidia-smi');
  copyFileSync(join(FIXTURES, 'fake-nvidia-smi'), path);
  // Replaced whole (write, then rename): a sample never reads a half-written or empty table (copyFile truncates first).
  const put = (file: string, text: string): void => {
    writeFileSync(join(dir, `${file}.tmp`), text);
    renameSync(join(dir, `${file}.tmp`), join(dir, file));
  };
  const gpuLine = (g: { index: number; uuid: string; totalMiB: number; usedMiB: number; util?: string; name?: string }): string =>
    `${g.index}, ${g.uuid}, ${g.totalMiB}, ${g.usedMiB}, ${g.totalMiB - g.usedMiB}, ${g.util ?? '3'}, ${g.name ?? 'NVIDIA Fake H200'}`;
  const smi = {
    path,
    gpus(list: Array<{ index: number; uuid: string; totalMiB: number; usedMiB: number; util?: string; name?: string }>): void {
      put('gpus.csv', list.map(gpuLine).join('\n') + (list.length ? '\n' : ''));
    },
    raw(text: string): void {
      put('gpus.csv', text);
    },
    apps(list: Array<{ pid: number; uuid: string; usedMiB: number | string }>): void {
      put('apps.csv', `${list.map((a) => `${a.pid}, ${a.uuid}, ${a.usedMiB}`).join('\n')}\n`);
    },
    fail(on: boolean): void {
      const f = join(dir, 'fail');
      if (on)
        writeFileSync(
          f,
          "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.\n",
        );
      else rmSync(f, { force: true });
    },
    calls(): string[] {
      try {
        return readFileSync(join(dir, 'calls.log'), 'utf8').trim().split('\n');
      } catch {
        return [];
      }
    },
  };
  smi.apps([]);
  return smi;
}

/** A logger whose lines the test can read. */
function captureLogger() {
  const lines: Array<{ level: number; msg: string; [k: string]: unknown }> = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  return { logger, lines, msgs: () => lines.map((l) => l.msg) };
}

const environOf = (pid: number): Record<string, string> =>
  Object.fromEntries(
    readFileSync(`/proc/${pid}/environ`, 'utf8')
      .split('\0')
      .filter(Boolean)
      .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
  );

const UUID0 = 'GPU-00000000-1111-2222-3333-444444444444';
const UUID1 = 'GPU-11111111-2222-3333-4444-555555555555';

describe('nvidia-smi output', () => {
  it('parses GPUs (N/A utilisation, commas in names) and compute apps; malformed output is an error naming the line', () => {
    expect(parseGpuCsv('0, GPU-a, 143771, 1024, 142747, 17, NVIDIA H200\n1, GPU-b, 16384, 0, 16384, [N/A], Tesla T4, rev. b\n')).toEqual([
      {
        index: 0,
        uuid: 'GPU-a',
        name: 'NVIDIA H200',
        totalBytes: 143771 * MiB,
        usedBytes: 1024 * MiB,
        freeBytes: 142747 * MiB,
        utilizationPercent: 17,
      },
      { index: 1, uuid: 'GPU-b', name: 'Tesla T4, rev. b', totalBytes: 16384 * MiB, usedBytes: 0, freeBytes: 16384 * MiB },
    ]);
    expect(parseGpuCsv('')).toEqual([]);
    expect(parseComputeApps('4242, GPU-a, 1500\n4243, GPU-b, [N/A]\n')).toEqual([
      { pid: 4242, gpuUuid: 'GPU-a', usedBytes: 1500 * MiB },
      { pid: 4243, gpuUuid: 'GPU-b', usedBytes: 0 },
    ]);
    expect(() => parseGpuCsv('0, GPU-a, lots, 1, 2, 3, X\n')).toThrow(/memory.total is not a number of MiB in "0, GPU-a, lots/);
    expect(() => parseGpuCsv('garbage\n')).toThrow(GpuParseError);
    expect(() => parseComputeApps('12, GPU-a\n')).toThrow(/expected 3 fields/);
  });
});

describe('GPU sampler (fake nvidia-smi)', () => {
  it('no nvidia-smi, a failing driver, no GPU, malformed output: GPU parts off with one log line each', async () => {
    const cases: Array<{ setup: (s: ReturnType<typeof fakeSmi>) => string; why: RegExp }> = [
      { setup: (s) => join(s.path, '..', 'not-there', 'nvidia-smi'), why: /not found \(no NVIDIA driver installed, or not on PATH\)/ },
      {
        setup: (s) => {
          s.fail(true);
          return s.path;
        },
        why: /exited with 9: NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver/,
      },
      {
        setup: (s) => {
          s.gpus([]);
          return s.path;
        },
        why: /lists no GPU/,
      },
      {
        setup: (s) => {
          s.raw('0, GPU-a, 1\n');
          return s.path;
        },
        why: /expected 7 fields.*\(malformed output\)/,
      },
    ];
    for (const c of cases) {
      const { logger, lines } = captureLogger();
      const sampler = new GpuSampler({ nvidiaSmi: c.setup(fakeSmi()), logger });
      expect(await sampler.sample()).toBeUndefined();
      expect(sampler.state).toBe('off');
      expect(sampler.reason).toMatch(c.why);
      // off for good: later samples run nothing and say nothing more
      expect(await sampler.sample()).toBeUndefined();
      expect(lines).toHaveLength(1);
      expect(lines[0]!.msg).toMatch(/^GPU: off \(.*\); admission and placement use host memory only$/);
    }
  });

  it('samples GPUs and compute apps; a GPU appearing is seen at the next sample; a failing driver is an error, then recovers', async () => {
    const smi = fakeSmi();
    smi.gpus([{ index: 0, uuid: UUID0, totalMiB: 16384, usedMiB: 1000 }]);
    smi.apps([{ pid: 4242, uuid: UUID0, usedMiB: 900 }]);
    const { logger, msgs } = captureLogger();
    const sampler = new GpuSampler({ nvidiaSmi: smi.path, logger });
    const s = await sampler.sample();
    expect(sampler.state).toBe('on');
    expect(s?.gpus).toMatchObject([{ index: 0, uuid: UUID0, freeBytes: 15384 * MiB, utilizationPercent: 3 }]);
    expect(s?.apps).toEqual([{ pid: 4242, gpuUuid: UUID0, usedBytes: 900 * MiB }]);
    expect(s!.costMs).toBeGreaterThan(0);
    expect(smi.calls().sort()).toEqual([
      '--query-compute-apps=pid,gpu_uuid,used_memory --format=csv,noheader,nounits',
      '--query-gpu=index,uuid,memory.total,memory.used,memory.free,utilization.gpu,name --format=csv,noheader,nounits',
    ]);

    smi.gpus([
      { index: 0, uuid: UUID0, totalMiB: 16384, usedMiB: 1000 },
      { index: 1, uuid: UUID1, totalMiB: 24576, usedMiB: 0 },
    ]);
    expect((await sampler.sample())?.gpus.map((g) => g.index)).toEqual([0, 1]);

    smi.fail(true);
    expect(await sampler.sample()).toBeUndefined();
    expect(await sampler.sample()).toBeUndefined();
    expect(sampler.state).toBe('error');
    expect(sampler.last?.gpus).toHaveLength(2); // the last good figures stay for display
    smi.fail(false);
    expect(await sampler.sample()).toBeDefined();
    expect(sampler.state).toBe('on');
    const m = msgs();
    expect(m.filter((x) => x.startsWith('GPU: sampling failed'))).toHaveLength(1); // logged once, not per sample
    expect(m.some((x) => x.startsWith('GPU: sampling recovered'))).toBe(true);
  });

  it('measures what one sample costs (both calls), reported for the README', async () => {
    const smi = fakeSmi();
    smi.gpus([{ index: 0, uuid: UUID0, totalMiB: 16384, usedMiB: 1000 }]);
    const sampler = new GpuSampler({ nvidiaSmi: smi.path, logger: pino({ level: 'silent' }) });
    const costs: number[] = [];
    for (let i = 0; i < 20; i++) costs.push((await sampler.sample())!.costMs);
    costs.sort((a, b) => a - b);
    const median = costs[10]!;
    console.log(`GPU sample cost with the fake nvidia-smi (2 spawns): median ${median} ms, max ${costs[19]} ms over 20 samples`);
    // cheap enough to sample every second even on this loaded machine
    expect(median).toBeLessThan(500);
  });
});

describe('GPU admission and placement in the governor (fake nvidia-smi, real engine processes)', () => {
  const gpuProfile = { name: 'gpu', command: fixture('normal', '--ms=20'), gpus: 'all' as const, expectedGpuMemoryBytes: 2 * GiB };

  it('pins each engine with CUDA_VISIBLE_DEVICES to the GPU with the most free memory, counting engines still starting', async () => {
    const smi = fakeSmi();
    smi.gpus([
      { index: 0, uuid: UUID0, totalMiB: 16384, usedMiB: 4096 }, // 12 GiB free
      { index: 1, uuid: UUID1, totalMiB: 16384, usedMiB: 2048 }, // 14 GiB free
    ]);
    // jobs long enough that the second needs a second engine
    const g = governor([{ ...gpuProfile, command: fixture('normal', '--ms=1500'), poolSize: 2 }], {
      gpu: { nvidiaSmi: smi.path },
      admission: { checkIntervalMs: 100 },
    });
    await g.start();
    const jobs = [g.run('gpu', req()), g.run('gpu', req())];
    const results = await Promise.all(jobs);
    const pids = results.map((r) => r.engine.pid!);
    expect(new Set(pids).size).toBe(2);
    // the first goes to GPU 1 (14 GiB free); GPU 1 then counts the 2 GiB that engine is expected to take and has not yet
    // (12 GiB), so the second goes to GPU 0 (12 GiB: a tie goes to the first listed)
    const pinned = pids.map((pid) => environOf(pid).CUDA_VISIBLE_DEVICES);
    expect(pinned.sort()).toEqual([UUID0, UUID1].sort());
    expect(environOf(pids[0]!).CUDA_DEVICE_ORDER).toBe('PCI_BUS_ID');

    // the GPU memory each engine holds comes from nvidia-smi's compute apps, by process tree
    const onGpu1 = pids.find((pid) => environOf(pid).CUDA_VISIBLE_DEVICES === UUID1)!;
    smi.apps([{ pid: onGpu1, uuid: UUID1, usedMiB: 1536 }]);
    const snap = await waitFor(
      () => {
        const s = g.snapshot();
        return s.processes.find((p) => p.pid === onGpu1)?.gpu?.usedBytes === 1536 * MiB ? s : undefined;
      },
      10_000,
      'the engine GPU memory in the snapshot',
    );
    expect(snap.processes.find((p) => p.pid === onGpu1)?.gpu).toEqual({ index: 1, uuid: UUID1, usedBytes: 1536 * MiB });
    expect(snap.gpu).toMatchObject({ state: 'on', gpus: [{ index: 0 }, { index: 1 }] });
    expect(snap.gpu!.sampleCostMs).toBeGreaterThan(0);
  });

  it('holds with GPU_MEMORY_LOW (naming the GPU and figures) within a sampling interval of free memory dropping, and resumes', async () => {
    const smi = fakeSmi();
    smi.gpus([{ index: 0, uuid: UUID0, totalMiB: 16384, usedMiB: 1024 }]);
    const interval = 200;
    const g = governor([gpuProfile], { gpu: { nvidiaSmi: smi.path }, admission: { checkIntervalMs: interval } });
    await g.start();
    await g.run('gpu', req());
    expect(g.admitting()).toBe(true);
    const events: Array<AdmissionState & { t: number }> = [];
    g.on('admission', (s: AdmissionState) => events.push({ ...s, t: Date.now() }));

    // memory fills up (another tenant): 1 GiB free < the 2.5 GiB floor (2 GiB expected + 512 MiB margin)
    const dropped = Date.now();
    smi.gpus([{ index: 0, uuid: UUID0, totalMiB: 16384, usedMiB: 15360 }]);
    const hold = await waitFor(() => events.find((e) => e.state === 'holding'), 10_000, 'holding');
    const reaction = hold.t - dropped;
    console.log(`GPU memory below the floor -> holding: ${reaction} ms (sampling interval ${interval} ms)`);
    expect(hold.reason).toBe('GPU_MEMORY_LOW');
    expect(hold.detail).toContain(`GPU 0 (NVIDIA Fake H200, ${UUID0}) has 1 GiB free of 16 GiB`);
    expect(hold.detail).toContain('engine gpu needs 2.5 GiB free (expected 2 GiB + margin 512 MiB)');
    expect(g.admitting()).toBe(false);
    expect(g.admitting('gpu')).toBe(false);
    // goal: one sampling interval; the margin covers a loaded 2-core machine (a sample spawns two processes)
    expect(reaction).toBeLessThan(interval * 2 + 1_000);

    smi.gpus([{ index: 0, uuid: UUID0, totalMiB: 16384, usedMiB: 1024 }]);
    await waitFor(() => events.find((e) => e.state === 'admitting'), 10_000, 'admitting again');
    expect(g.admitting()).toBe(true);
  });

  it('does not start an engine while no GPU has its floor free; starts it once memory is freed', async () => {
    const smi = fakeSmi();
    smi.gpus([{ index: 0, uuid: UUID0, totalMiB: 16384, usedMiB: 15000 }]);
    const g = governor([gpuProfile], { gpu: { nvidiaSmi: smi.path }, admission: { checkIntervalMs: 100 } });
    await g.start();
    expect(g.snapshot().admission).toMatchObject({ state: 'holding', reason: 'GPU_MEMORY_LOW' });
    const job = g.run('gpu', req());
    // several admission checks pass without a spawn
    const calls = smi.calls().length;
    await waitFor(() => smi.calls().length >= calls + 6, 10_000, 'more GPU samples');
    expect(g.startHistory()).toEqual([]);
    smi.gpus([{ index: 0, uuid: UUID0, totalMiB: 16384, usedMiB: 2000 }]);
    const r = await job;
    expect(environOf(r.engine.pid!).CUDA_VISIBLE_DEVICES).toBe(UUID0);
    expect(g.startHistory()).toHaveLength(1);
  });

  it('a failing driver or malformed output mid-run holds with GPU_UNAVAILABLE; recovery admits again', async () => {
    const smi = fakeSmi();
    smi.gpus([{ index: 0, uuid: UUID0, totalMiB: 16384, usedMiB: 1024 }]);
    const g = governor([gpuProfile], { gpu: { nvidiaSmi: smi.path }, admission: { checkIntervalMs: 100 } });
    await g.start();
    expect(g.admitting()).toBe(true);
    smi.fail(true);
    await waitFor(() => g.snapshot().admission.reason === 'GPU_UNAVAILABLE', 10_000, 'GPU_UNAVAILABLE');
    expect(g.snapshot().admission.detail).toMatch(/couldn't communicate with the NVIDIA driver/);
    expect(g.snapshot().gpu?.state).toBe('error');
    smi.fail(false);
    await waitFor(() => g.admitting(), 10_000, 'admitting after the driver recovered');
    smi.raw('0, GPU-x, not-a-number, 1, 2, 3, X\n');
    await waitFor(() => g.snapshot().admission.reason === 'GPU_UNAVAILABLE', 10_000, 'GPU_UNAVAILABLE (malformed)');
    expect(g.snapshot().admission.detail).toMatch(/malformed output/);
  });

  it('recycles an engine between jobs when its GPU memory passes softLimitRatio of gpuMemoryLimitBytes', async () => {
    const smi = fakeSmi();
    smi.gpus([{ index: 0, uuid: UUID0, totalMiB: 16384, usedMiB: 1024 }]);
    const g = governor([{ ...gpuProfile, gpuMemoryLimitBytes: 4 * GiB }], {
      gpu: { nvidiaSmi: smi.path },
      admission: { checkIntervalMs: 100 },
    });
    const recycles: Array<{ reason: string; pid: number | undefined; figures: Record<string, unknown> }> = [];
    g.on('recycle', (r) => recycles.push(r));
    await g.start();
    const first = await g.run('gpu', req());
    const pid = first.engine.pid!;
    // 2.5 GiB: under the 3 GiB soft limit (0.75 x 4 GiB): kept
    smi.apps([{ pid, uuid: UUID0, usedMiB: 2560 }]);
    await waitFor(
      () => g.snapshot().processes.find((p) => p.pid === pid)?.gpu?.usedBytes === 2560 * MiB,
      10_000,
      'the sample with 2.5 GiB',
    );
    expect((await g.run('gpu', req())).engine.pid).toBe(pid);
    expect(recycles).toEqual([]);
    // 3.5 GiB (memory left behind by the engine): recycled after its next job, and replaced
    smi.apps([{ pid, uuid: UUID0, usedMiB: 3584 }]);
    await waitFor(
      () => g.snapshot().processes.find((p) => p.pid === pid)?.gpu?.usedBytes === 3584 * MiB,
      10_000,
      'the sample with 3.5 GiB',
    );
    expect((await g.run('gpu', req())).engine.pid).toBe(pid);
    expect(recycles).toEqual([
      {
        profile: 'gpu',
        pid,
        reason: 'gpu-soft-limit',
        figures: expect.objectContaining({ gpuUsedBytes: 3584 * MiB, gpuSoftLimitBytes: 3 * GiB, gpuLimitBytes: 4 * GiB }),
      },
    ]);
    expect((await g.run('gpu', req())).engine.pid).not.toBe(pid);
  });

  it('hard GPU limit: kills an engine mid-job above gpuMemoryLimitBytes (ENGINE_GPU_MEMORY_LIMIT) and replaces it; soft mode only recycles', async () => {
    const smi = fakeSmi();
    smi.gpus([{ index: 0, uuid: UUID0, totalMiB: 16384, usedMiB: 1024 }]);
    const g = governor([{ ...gpuProfile, command: fixture('normal', '--ms=30000'), gpuMemoryLimitBytes: 4 * GiB }], {
      gpu: { nvidiaSmi: smi.path },
      admission: { checkIntervalMs: 100 },
    });
    const recycles: Array<{ reason: string; pid: number | undefined; figures: Record<string, unknown> }> = [];
    g.on('recycle', (r) => recycles.push(r));
    await g.start();
    const job = g.run('gpu', req());
    const busy = await waitFor(() => g.snapshot().processes.find((p) => p.state === 'busy'), 10_000, 'a busy engine');
    const pid = busy.pid!;
    const t0 = Date.now();
    smi.apps([{ pid, uuid: UUID0, usedMiB: 5120 }]);
    const err = await job.then(
      () => undefined,
      (e: unknown) => e as { code: string; message: string; retryable: boolean; details: Record<string, unknown> },
    );
    console.log(`GPU memory over the hard limit -> job failed: ${Date.now() - t0} ms (sampling interval 100 ms)`);
    expect(err).toMatchObject({
      code: 'ENGINE_GPU_MEMORY_LIMIT',
      retryable: true,
      details: { gpu: 0, gpuUsedBytes: 5 * GiB, gpuLimitBytes: 4 * GiB },
    });
    expect(err!.message).toMatch(
      /held 5 GiB of GPU memory on GPU 0, over its GPU memory limit 4 GiB \(gpuMemoryLimitBytes, hard\); killed mid-job/,
    );
    await waitFor(() => recycles.find((r) => r.reason === 'gpu-memory-limit'), 10_000, 'the recycle');
    expect(recycles).toEqual([
      {
        profile: 'gpu',
        pid,
        reason: 'gpu-memory-limit',
        figures: expect.objectContaining({ gpuUsedBytes: 5 * GiB, gpuLimitBytes: 4 * GiB }),
      },
    ]);
    // replaced: the next job runs on a new process
    const next = await waitFor(() => g.snapshot().processes.find((p) => p.pid !== pid && p.state === 'idle'), 20_000, 'a replacement');
    expect(next.pid).not.toBe(pid);

    // soft mode: the same figures never kill mid-job
    const soft = governor(
      [
        {
          ...gpuProfile,
          name: 'gpusoft',
          command: fixture('normal', '--ms=5000'),
          gpuMemoryLimitBytes: 4 * GiB,
          gpuMemoryLimitMode: 'soft',
        },
      ],
      { gpu: { nvidiaSmi: smi.path }, admission: { checkIntervalMs: 100 } },
    );
    const softRecycles: string[] = [];
    soft.on('recycle', (r) => softRecycles.push(r.reason));
    await soft.start();
    const softJob = soft.run('gpusoft', req());
    const softBusy = await waitFor(() => soft.snapshot().processes.find((p) => p.state === 'busy'), 10_000, 'a busy engine');
    smi.apps([{ pid: softBusy.pid!, uuid: UUID0, usedMiB: 5120 }]);
    // seen over the limit mid-job, and left running
    const over = await waitFor(
      () => soft.snapshot().processes.find((p) => p.pid === softBusy.pid && p.gpu?.usedBytes === 5 * GiB),
      10_000,
      'the 5 GiB sample',
    );
    expect(over.state).toBe('busy');
    expect((await softJob).engine.pid).toBe(softBusy.pid);
    await waitFor(() => softRecycles.length > 0 || undefined, 10_000, 'the between-jobs recycle');
    expect(softRecycles).toEqual(['gpu-soft-limit']);
  });

  it('no GPU: GPU parts off with one log line; engines start unpinned and admission is host memory only', async () => {
    const smi = fakeSmi();
    unlinkSync(smi.path);
    const { logger, msgs } = captureLogger();
    const g = governor([gpuProfile], { gpu: { nvidiaSmi: smi.path }, logger, admission: { checkIntervalMs: 100 } });
    await g.start();
    const r = await g.run('gpu', req());
    expect(environOf(r.engine.pid!).CUDA_VISIBLE_DEVICES).toBeUndefined();
    expect(g.admitting()).toBe(true);
    expect(g.snapshot().gpu).toMatchObject({ state: 'off', gpus: [] });
    expect(msgs().filter((m) => m.startsWith('GPU:'))).toEqual([
      expect.stringMatching(/^GPU: off \(.*not found.*\); admission and placement use host memory only$/),
    ]);
  });
});
