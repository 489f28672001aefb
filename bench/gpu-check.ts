/**
 * `npm run gpu-check`: GPU governance on a real NVIDIA GPU host. IT HAS NOT RUN ON A GPU YET: every machine this was
 * written and tested on has none, so no table from it exists. The CI tests drive the same governor code with a fake
 * nvidia-smi (packages/governor/test/gpu.test.ts, test/gpu-worker.test.ts, test/metrics-gpu.test.ts,
 * test/dashboard-hosts.test.ts). Run it on a GPU host and put the table it prints in docs/gpu.md.
 *
 * It runs the governor in this process with real engine processes (bench/fixtures/torch_gpu_engine.py, which
 * allocates GPU memory on request) and prints, as a table:
 *   1. what one nvidia-smi sample costs (median of 20);
 *   2. placement: one engine per GPU (up to 2), each pinned by CUDA_VISIBLE_DEVICES to the GPU with the most free memory;
 *   3. admission: a second process fills the GPU until free memory is below the floor -> holding GPU_MEMORY_LOW (and
 *      the time it took), then frees it -> admitting;
 *   4. the automatic background tile chosen for a 4000x3000 photo from the GPU's free memory (the model in
 *      packages/governor/src/gpu-tiles.ts);
 *   5. the GPU memory limit, soft: an engine that keeps 6 GiB after a job passes the soft mark (0.75 x 8 GiB) and is
 *      recycled after its next job ("gpu-soft-limit");
 *   6. the GPU memory limit, hard: a job that allocates 8 GiB more mid-job passes the 8 GiB limit; the engine is killed,
 *      the job fails ENGINE_GPU_MEMORY_LIMIT, and the next job runs on a fresh engine.
 * Every row says what happened; a check that did not happen says so (DID NOT ...), and the exit status is 1.
 *
 *   GPU_CHECK_PYTHON=/opt/gfpgan-venv/bin/python npm run gpu-check
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { DEFAULT_OPTIONS, FALLBACK_BG_TILE, type AdmissionState, type JobOptions } from '@photoenhance/contracts';
import { chooseBgTile, formatBytes, Governor, GpuSampler, type RunRequest } from '@photoenhance/governor';

const GiB = 1024 ** 3;
const here = fileURLToPath(new URL('.', import.meta.url));
/** The schema's defaults, resolved as a job carries them (no background upsampler, PNG, a fixed tile). */
const RESOLVED_OPTIONS: JobOptions = { ...DEFAULT_OPTIONS, bgUpsampler: 'none', bgTile: FALLBACK_BG_TILE, format: 'png' };
/** A job for the torch check engine: its id says what the engine does (the input path is not read). */
const torchJob = (out: string, name: string): RunRequest => ({
  id: name,
  input: `/tmp/${name}`,
  output: join(out, `${name}.png`),
  options: { ...RESOLVED_OPTIONS, scale: 1 },
});
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
  rows.push([
    'GPUs',
    `${gpus.length}`,
    gpus.map((g) => `${g.index} ${g.name} ${formatBytes(g.freeBytes)} free of ${formatBytes(g.totalBytes)}`).join('; '),
  ]);

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
    profiles: [
      {
        name: 'torch',
        command: [python, join(here, 'fixtures/torch_gpu_engine.py'), '--resident-mib=1024'],
        poolSize: engines,
        gpus: 'all',
        expectedGpuMemoryBytes: 2 * GiB,
        memoryLimitBytes: 8 * GiB,
        expectedMemoryBytes: GiB,
        startupTimeoutMs: 120_000,
      },
    ],
  });
  let hog: ChildProcess | undefined;
  try {
    await g.start();
    const job = (name: string): RunRequest => torchJob(out, name);
    const runs = await Promise.all(Array.from({ length: engines }, (_, i) => g.run('torch', job(`place-${i}-alloc-256-hold-3000ms`))));
    const placed = g
      .snapshot()
      .processes.map((p) => `pid ${p.pid} -> GPU ${p.gpu?.index ?? '?'} (holds ${formatBytes(p.gpu?.usedBytes ?? 0)})`);
    rows.push([
      'placement',
      `${new Set(runs.map((r) => r.done.meta?.visible)).size} GPU(s) used by ${engines} engine(s)`,
      placed.join('; '),
    ]);

    // 3. admission: fill the engine's GPU from outside until free < floor
    const proc = g.snapshot().processes[0]!;
    const target = gpus.find((x) => x.index === proc.gpu?.index) ?? gpus[0]!;
    const now = (await sampler.sample())!.gpus.find((x) => x.uuid === target.uuid)!;
    const fill = Math.max(0, now.freeBytes - 1 * GiB); // leave 1 GiB free: below the 2.5 GiB floor
    const events: Array<AdmissionState & { t: number }> = [];
    g.on('admission', (s: AdmissionState) => events.push({ ...s, t: Date.now() }));
    hog = spawn(
      python,
      [
        '-c',
        `import torch,sys,time\nx=torch.empty(${fill}, dtype=torch.uint8, device='cuda')\nprint('filled', flush=True)\ntime.sleep(600)`,
      ],
      {
        env: { ...process.env, CUDA_VISIBLE_DEVICES: target.uuid },
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    await new Promise<void>((res, rej) => {
      hog!.stdout!.once('data', () => res());
      hog!.once('exit', (c) => rej(new Error(`the filling process exited with ${c}`)));
    });
    const filledAt = Date.now();
    const hold = await until(() => events.find((e) => e.state === 'holding'), 30_000);
    rows.push([
      'admission holds',
      hold ? `${hold.reason} after ${hold.t - filledAt} ms` : 'DID NOT HOLD within 30 s',
      hold?.detail ?? `filled ${formatBytes(fill)} on GPU ${target.index}`,
    ]);
    hog.kill('SIGKILL');
    const freedAt = Date.now();
    const resume = await until(() => events.find((e) => e.state === 'admitting'), 30_000);
    rows.push([
      'admission resumes',
      resume ? `admitting after ${resume.t - freedAt} ms` : 'DID NOT RESUME within 30 s',
      `sampling interval 250 ms`,
    ]);

    // 4. tile for a large photo
    const free = (await sampler.sample())!.gpus.find((x) => x.uuid === target.uuid)!.freeBytes;
    const tile = chooseBgTile(free, 4000, 3000);
    rows.push([
      'automatic bgTile, 4000x3000',
      tile ? (tile.tile === 0 ? 'untiled' : `${tile.tile} px`) : 'none fits',
      `${formatBytes(free)} free; expected ${tile ? formatBytes(tile.expectedBytes) : '-'} of a ${tile ? formatBytes(tile.budgetBytes) : '-'} budget (model, not measured here)`,
    ]);
  } finally {
    hog?.kill('SIGKILL');
    await g.close();
  }

  // 5 and 6. the GPU memory limit (8 GiB, soft mark 6 GiB): soft recycling between jobs, then the hard kill mid-job.
  // Wide margins: nvidia-smi also counts the CUDA context (0.3-1 GiB, by GPU and driver) and the allocator's blocks.
  const limit = 8 * GiB;
  const lg = new Governor({
    hostId: 'gpu-check-limit',
    logger,
    prewarm: false,
    enforcement: 'watchdog',
    gpu: { nvidiaSmi },
    admission: { checkIntervalMs: 250 },
    profiles: [
      {
        name: 'torchlimit',
        command: [python, join(here, 'fixtures/torch_gpu_engine.py'), '--resident-mib=512'],
        gpus: 'all',
        expectedGpuMemoryBytes: 2 * GiB,
        gpuMemoryLimitBytes: limit,
        memoryLimitBytes: 8 * GiB,
        expectedMemoryBytes: GiB,
        startupTimeoutMs: 120_000,
      },
    ],
  });
  const recycles: Array<{ reason: string; pid: number | undefined; figures: Record<string, unknown> }> = [];
  lg.on('recycle', (r) => recycles.push(r));
  const job = (name: string): RunRequest => torchJob(out, name);
  const held = (pid: number | undefined): number => lg.snapshot().processes.find((p) => p.pid === pid)?.gpu?.usedBytes ?? 0;
  try {
    await lg.start();
    // 5. soft: keep 6 GiB after the job (a leak): about 7 GiB held with the resident 512 MiB and the context, above the
    // 6 GiB soft mark and under the limit; the next sample shows it; the next job ends with a recycle
    const leaky = await lg.run('torchlimit', job('soft-keep-6144-hold-100'));
    const pid = leaky.engine.pid;
    const seen = await until(() => (held(pid) > 0.75 * limit ? held(pid) : undefined), 10_000);
    await lg.run('torchlimit', job('soft-next-hold-100'));
    const soft = await until(() => recycles.find((r) => r.reason === 'gpu-soft-limit'), 10_000);
    rows.push([
      'GPU limit, soft (8 GiB)',
      soft ? `recycled (gpu-soft-limit) after its next job` : 'DID NOT RECYCLE',
      `engine held ${seen ? formatBytes(seen) : `${formatBytes(held(pid))} (never above the 6 GiB soft mark)`}; ${soft ? JSON.stringify(soft.figures) : ''}`,
    ]);

    // 6. hard: allocate 8 GiB more mid-job, on top of the resident 512 MiB and the CUDA context
    const t0 = Date.now();
    const err = await lg.run('torchlimit', job('hard-alloc-8192-hold-20000')).then(
      () => undefined,
      (e: unknown) => e as { code?: string; message?: string },
    );
    const failedAfter = Date.now() - t0;
    const next = await lg.run('torchlimit', job('hard-next-hold-100')).then(
      (r) => r,
      () => undefined,
    );
    rows.push([
      'GPU limit, hard (8 GiB)',
      err?.code === 'ENGINE_GPU_MEMORY_LIMIT'
        ? `job failed ENGINE_GPU_MEMORY_LIMIT ${failedAfter} ms after it was sent`
        : `DID NOT KILL (job ${err ? `failed ${err.code}` : 'completed'})`,
      `${err?.message?.slice(0, 160) ?? ''}; next job ${next ? `completed on pid ${next.engine.pid}` : 'FAILED'}`,
    ]);
  } finally {
    await lg.close();
  }
  table();
  return rows.some((r) => /^DID NOT|FAILED/.test(r[1]) || r[2].includes('FAILED')) ? 1 : 0;
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
