import { execFile } from 'node:child_process';
import type { Logger } from 'pino';
import type { GpuInfo, GpuProcess } from '@photoenhance/contracts';
import { BYTES } from './child-failure.js';

/** The two queries, exactly as run (argument arrays, no shell). Memory figures are MiB with `nounits`. */
export const GPU_QUERY = [
  '--query-gpu=index,uuid,memory.total,memory.used,memory.free,utilization.gpu,name',
  '--format=csv,noheader,nounits',
];
export const APPS_QUERY = ['--query-compute-apps=pid,gpu_uuid,used_memory', '--format=csv,noheader,nounits'];

export class GpuParseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GpuParseError';
  }
}

/** "[N/A]", "[Not Supported]", "N/A": nvidia-smi's ways of saying a figure is not available. */
const notAvailable = (s: string): boolean => /^\[?(N\/A|Not Supported|Unknown Error|Insufficient Permissions)\]?$/i.test(s);

function mib(field: string, value: string, line: string): number {
  const n = Number(value);
  if (value === '' || !Number.isFinite(n) || n < 0) throw new GpuParseError(`nvidia-smi: ${field} is not a number of MiB in "${line}"`);
  return Math.round(n * BYTES.MiB);
}

/** Rows of `--query-gpu=index,uuid,memory.total,memory.used,memory.free,utilization.gpu,name --format=csv,noheader,nounits`
 * (the name last, so a comma in it cannot shift the figures). */
export function parseGpuCsv(text: string): GpuInfo[] {
  const gpus: GpuInfo[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line) continue;
    const f = line.split(',').map((s) => s.trim());
    if (f.length < 7)
      throw new GpuParseError(
        `nvidia-smi: expected 7 fields (index, uuid, memory.total, memory.used, memory.free, utilization.gpu, name), got ${f.length} in "${line}"`,
      );
    const [index, uuid, total, used, free, util] = f as [string, string, string, string, string, string];
    const name = line.split(',').slice(6).join(',').trim();
    if (!/^\d+$/.test(index)) throw new GpuParseError(`nvidia-smi: index is not a number in "${line}"`);
    if (!uuid) throw new GpuParseError(`nvidia-smi: empty uuid in "${line}"`);
    const gpu: GpuInfo = {
      index: Number(index),
      uuid,
      name,
      totalBytes: mib('memory.total', total, line),
      usedBytes: mib('memory.used', used, line),
      freeBytes: mib('memory.free', free, line),
    };
    // Utilisation is "[N/A]" on some boards (and in MIG mode); memory is what admission needs.
    if (!notAvailable(util)) {
      const u = Number(util);
      if (!Number.isFinite(u) || u < 0 || u > 100) throw new GpuParseError(`nvidia-smi: utilization.gpu is not a percentage in "${line}"`);
      gpu.utilizationPercent = u;
    }
    gpus.push(gpu);
  }
  return gpus;
}

/** Rows of `--query-compute-apps=pid,gpu_uuid,used_memory --format=csv,noheader,nounits` (empty when none run). */
export function parseComputeApps(text: string): GpuProcess[] {
  const apps: GpuProcess[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || /^No running/i.test(line)) continue;
    const f = line.split(',').map((s) => s.trim());
    if (f.length !== 3) throw new GpuParseError(`nvidia-smi: expected 3 fields (pid, gpu_uuid, used_memory), got ${f.length} in "${line}"`);
    const [pid, uuid, used] = f as [string, string, string];
    if (!/^\d+$/.test(pid)) throw new GpuParseError(`nvidia-smi: pid is not a number in "${line}"`);
    // used_memory is "[N/A]" where the driver cannot attribute memory (e.g. some containers): count it as unknown (0).
    apps.push({ pid: Number(pid), gpuUuid: uuid, usedBytes: notAvailable(used) ? 0 : mib('used_memory', used, line) });
  }
  return apps;
}

export type GpuSamplerState = 'unknown' | 'on' | 'off' | 'error';

export interface GpuSample {
  at: number;
  gpus: GpuInfo[];
  apps: GpuProcess[];
  /** What one sample cost (both nvidia-smi calls, run in parallel), in ms. */
  costMs: number;
}

export interface GpuSamplerOptions {
  /** Path of nvidia-smi. Default "nvidia-smi" (looked up on PATH). */
  nvidiaSmi?: string;
  /** Per call; a hung driver must not stall the governor. Default 5 000. */
  timeoutMs?: number;
  logger: Logger;
}

interface RunOut {
  stdout: string;
  stderr: string;
}

function run(file: string, args: string[], timeoutMs: number): Promise<RunOut> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: timeoutMs, maxBuffer: 1 << 20, encoding: 'utf8', killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      if (err) reject(Object.assign(err, { stdout, stderr }));
      else resolve({ stdout, stderr });
    });
  });
}

/** One line saying why a call failed: not installed, timed out, or the driver's own message (nvidia-smi prints it on stdout). */
function describeFailure(
  file: string,
  err: NodeJS.ErrnoException & { stdout?: string; stderr?: string; killed?: boolean; code?: unknown },
): string {
  if (err.code === 'ENOENT') return `${file} not found (no NVIDIA driver installed, or not on PATH)`;
  if (err.code === 'EACCES') return `${file} is not executable`;
  if (err.killed) return `${file} did not answer in time`;
  const said = `${err.stdout ?? ''}\n${err.stderr ?? ''}`.trim().split('\n')[0]?.slice(0, 300);
  return `${file} exited with ${String(err.code)}${said ? `: ${said}` : ''}`;
}

/**
 * Reads the GPUs through nvidia-smi. The first sample decides: no nvidia-smi, a driver that does not answer, or no
 * GPU listed switches the GPU parts off for good (one log line, everything else works as without GPUs). After that
 * a failing sample puts the sampler in `error` (logged once per change) with the last good figures kept for display.
 */
export class GpuSampler {
  readonly nvidiaSmi: string;
  private readonly timeoutMs: number;
  private readonly logger: Logger;
  state: GpuSamplerState = 'unknown';
  /** Why the state is what it is (off/error), for logs and /v1/system. */
  reason = 'not sampled yet';
  last: GpuSample | undefined;
  private inflight: Promise<GpuSample | undefined> | undefined;

  constructor(opts: GpuSamplerOptions) {
    this.nvidiaSmi = opts.nvidiaSmi ?? 'nvidia-smi';
    this.timeoutMs = opts.timeoutMs ?? 5_000;
    this.logger = opts.logger;
  }

  get enabled(): boolean {
    return this.state === 'on' || this.state === 'error';
  }

  /** Take one sample (concurrent callers share it). Resolves undefined when off or failing. */
  sample(): Promise<GpuSample | undefined> {
    if (this.state === 'off') return Promise.resolve(undefined);
    this.inflight ??= this.take().finally(() => {
      this.inflight = undefined;
    });
    return this.inflight;
  }

  private async take(): Promise<GpuSample | undefined> {
    const t0 = performance.now();
    let sample: GpuSample;
    try {
      const [g, a] = await Promise.all([run(this.nvidiaSmi, GPU_QUERY, this.timeoutMs), run(this.nvidiaSmi, APPS_QUERY, this.timeoutMs)]);
      const gpus = parseGpuCsv(g.stdout);
      const apps = parseComputeApps(a.stdout);
      sample = { at: Date.now(), gpus, apps, costMs: +(performance.now() - t0).toFixed(2) };
    } catch (e) {
      const why =
        e instanceof GpuParseError ? `${e.message} (malformed output)` : describeFailure(this.nvidiaSmi, e as NodeJS.ErrnoException);
      if (this.state === 'unknown') return this.off(why);
      if (this.state !== 'error' || this.reason !== why) {
        this.logger.error(
          { nvidiaSmi: this.nvidiaSmi, reason: why },
          `GPU: sampling failed, GPU admission holds until it recovers: ${why}`,
        );
      }
      this.state = 'error';
      this.reason = why;
      return undefined;
    }
    if (this.state === 'unknown' && sample.gpus.length === 0) return this.off(`${this.nvidiaSmi} lists no GPU`);
    if (this.state !== 'on') {
      const list = sample.gpus.map((g) => `${g.index} ${g.name} (${Math.round(g.totalBytes / BYTES.MiB)} MiB)`).join(', ');
      this.logger.info(
        { nvidiaSmi: this.nvidiaSmi, gpus: sample.gpus.length, costMs: sample.costMs },
        `GPU: ${this.state === 'error' ? 'sampling recovered' : 'on'}: ${list}`,
      );
    }
    this.state = 'on';
    this.reason = `${sample.gpus.length} GPU(s) via ${this.nvidiaSmi}`;
    this.last = sample;
    return sample;
  }

  private off(why: string): undefined {
    this.state = 'off';
    this.reason = why;
    // The one line that says GPU governance is off and why; nothing else changes.
    this.logger.info({ nvidiaSmi: this.nvidiaSmi, reason: why }, `GPU: off (${why}); admission and placement use host memory only`);
    return undefined;
  }
}
