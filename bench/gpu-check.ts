/**
 * `npm run gpu-check`: GPU governance on a real NVIDIA GPU host. HAS NOT RUN YET on a real GPU: the machine this was
 * written on has none (the CI tests drive the same code with a fake nvidia-smi: packages/governor/test/gpu.test.ts,
 * test/gpu-worker.test.ts). Run it on a GPU host and put the table in packages/governor/GPU.md.
 *
 * It runs the governor in this process with real engine processes (bench/fixtures/torch_gpu_engine.py, which
 * allocates GPU memory on request) and shows, as a table:
 *   1. what one nvidia-smi sample costs (median of 20);
 *   2. placement: one engine per GPU, each pinned by CUDA_VISIBLE_DEVICES to the GPU with the most free memory;
 *   3. admission: a second process fills the GPU until free memory is below the floor -> holding GPU_MEMORY_LOW (and
 *      the time it took), then frees it -> admitting;
 *   4. the automatic background tile chosen for a 4000x3000 photo from the GPU's free memory (the model in
 *      packages/governor/src/gpu-tiles.ts; not yet applied to jobs by the worker).
 * The GPU memory limit's soft recycling is covered by the fake-nvidia-smi tests but not shown here yet.
 *
 *   GPU_CHECK_PYTHON=/opt/gfpgan-venv/bin/python npm run gpu-check
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import type { AdmissionState } from '@photoenhance/contracts';
import { chooseBgTile, formatBytes, Governor, GpuSampler, type RunRequest } from '@photoenhance/governor';

const GiB = 1024 ** 3;
const here = fileURLToPath(new URL('.', import.meta.url));
const python = process.env.GPU_CHECK_PYTHON ?? 'python3';
const nvidiaSmi = process.env.NVIDIA_SMI ?? 'nvidia-smi';
const rows: Array<[string, string, string]> = [];
const logger = pino({ level: process.env.LOG_LEVEL ?? 'warn' });

function table(): void {
  const w = [0, 1, 2].map((i) => Math.max(...rows.map((r) => r[i]!.length), 6));
  const line = (r: string[]): string => `| ${r.map((c, i) => c.padEnd(w[i]!)).join(' | ')} |`;
  console.log(line(['check', 'result', 'figures']));
  console.log(`|${w.map((n) => '-'.repeat(n + 2)).join('|')}|`);
  for (const r of rows) console.log(line(r));
}

async function main(): Promise<number> {
  const sampler = new GpuSampler({ nvidiaSmi, logger });
  const first = await sampler.sample();
  if (!first) {
    console.log(`gpu-check did not run: ${sampler.reason}. It needs a host with an NVIDIA GPU, its driver and nvidia-smi.`);
    return 2;
  }
  const torchOk = spawnSync(python, ['-c', 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)']).status === 0;
  if (!torchOk) {
    console.log(`gpu-check did not run: ${python} cannot import torch with CUDA (set GPU_CHECK_PYTHON to a venv that can).`);
    return 2;
  }

  // 1. sample cost
  const costs: number[] = [];
  for (let i = 0; i < 20; i++) costs.push((await sampler.sample())!.costMs);
  costs.sort((a, b) => a - b);
  rows.push(['nvidia-smi sample cost', `median ${costs[10]} ms`, `min ${costs[0]} ms, max ${costs[19]} ms, 20 samples (2 calls each)`]);
  const gpus = first.gpus;
  rows.push(['GPUs', `${gpus.length}`, gpus.map((g) => `${g.index} ${g.name} ${formatBytes(g.freeBytes)} free of ${formatBytes(g.totalBytes)}`).join('; ')]);

  // 2. placement
  const engines = Math.min(gpus.length, 2);
  const out = mkdtempSync(join(tmpdir(), 'pe-gpu-check-'));
  const g = new Governor({
    hostId: 'gpu-check',
    logger,
    prewarm: false,
    enforcement: 'watchdog',
    gpu: { nvidiaSmi },
    admission: { checkIntervalMs: 250 },
    profiles: [{
      name: 'torch',
      command: [python, join(here, 'fixtures/torch_gpu_engine.py'), '--resident-mib=1024'],
      poolSize: engines,
      gpus: 'all',
      expectedGpuMemoryBytes: 2 * GiB,
      memoryLimitBytes: 8 * GiB,
      expectedMemoryBytes: GiB,
      startupTimeoutMs: 120_000,
    }],
  });
  let hog: ChildProcess | undefined;
  try {
    await g.start();
    const job = (name: string): RunRequest => ({ id: name, input: `/tmp/${name}`, output: join(out, `${name}.png`), options: { scale: 1, version: '1.4', weight: 0.5, onlyCenterFace: false, aligned: false, bgUpsampler: 'none', bgTile: 400, format: 'png', quality: 92, priority: 'normal' } });
    const runs = await Promise.all(Array.from({ length: engines }, (_, i) => g.run('torch', job(`place-${i}-alloc-256-hold-3000ms`))));
    const placed = g.snapshot().processes.map((p) => `pid ${p.pid} -> GPU ${p.gpu?.index ?? '?'} (holds ${formatBytes(p.gpu?.usedBytes ?? 0)})`);
    rows.push(['placement', `${new Set(runs.map((r) => r.done.meta?.visible)).size} GPU(s) used by ${engines} engine(s)`, placed.join('; ')]);

    // 3. admission: fill the engine's GPU from outside until free < floor
    const proc = g.snapshot().processes[0]!;
    const target = gpus.find((x) => x.index === proc.gpu?.index) ?? gpus[0]!;
    const now = (await sampler.sample())!.gpus.find((x) => x.uuid === target.uuid)!;
    const fill = Math.max(0, now.freeBytes - 1 * GiB); // leave 1 GiB free: below the 2.5 GiB floor
    const events: Array<AdmissionState & { t: number }> = [];
    g.on('admission', (s: AdmissionState) => events.push({ ...s, t: Date.now() }));
    hog = spawn(python, ['-c', `import torch,sys,time\nx=torch.empty(${fill}, dtype=torch.uint8, device='cuda')\nprint('filled', flush=True)\ntime.sleep(600)`], {
      env: { ...process.env, CUDA_VISIBLE_DEVICES: target.uuid },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await new Promise<void>((res, rej) => {
      hog!.stdout!.once('data', () => res());
      hog!.once('exit', (c) => rej(new Error(`the filling process exited with ${c}`)));
    });
    const filledAt = Date.now();
    const hold = await until(() => events.find((e) => e.state === 'holding'), 30_000);
    rows.push(['admission holds', hold ? `${hold.reason} after ${hold.t - filledAt} ms` : 'DID NOT HOLD within 30 s', hold?.detail ?? `filled ${formatBytes(fill)} on GPU ${target.index}`]);
    hog.kill('SIGKILL');
    const freedAt = Date.now();
    const resume = await until(() => events.find((e) => e.state === 'admitting'), 30_000);
    rows.push(['admission resumes', resume ? `admitting after ${resume.t - freedAt} ms` : 'DID NOT RESUME within 30 s', `sampling interval 250 ms`]);

    // 4. tile for a large photo
    const free = (await sampler.sample())!.gpus.find((x) => x.uuid === target.uuid)!.freeBytes;
    const tile = chooseBgTile(free, 4000, 3000);
    rows.push(['automatic bgTile, 4000x3000', tile ? (tile.tile === 0 ? 'untiled' : `${tile.tile} px`) : 'none fits', `${formatBytes(free)} free; expected ${tile ? formatBytes(tile.expectedBytes) : '-'} of a ${tile ? formatBytes(tile.budgetBytes) : '-'} budget (model, not measured here)`]);
    rows.push(['GPU memory limit recycling', 'not shown by this script', 'soft recycling is tested with the fake nvidia-smi; hard limit not implemented']);
  } finally {
    hog?.kill('SIGKILL');
    await g.close();
  }
  table();
  return 0;
}

async function until<T>(fn: () => T | undefined, timeoutMs: number): Promise<T | undefined> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const v = fn();
    if (v) return v;
    await new Promise((r) => setTimeout(r, 20));
  }
  return undefined;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
