import { copyFileSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FIXTURE_ENGINE, REPO, startWorker, type RunningWorker } from './stack.js';

const MiB = 2 ** 20;

export interface FakeGpuRow {
  index: number;
  uuid: string;
  totalMiB: number;
  usedMiB: number;
  /** utilization.gpu in percent, or "[N/A]". Default 0. */
  util?: number | string;
  name?: string;
}

/**
 * The fake nvidia-smi (packages/governor/test/fixtures/fake-nvidia-smi) in a folder of its own, with functions that
 * script what it prints. A worker uses it through NVIDIA_SMI=<path>; files are replaced whole (write, then rename: copyFile
 * truncates first), so a sample never reads half a table or an empty one.
 */
export function fakeNvidiaSmi() {
  const dir = mkdtempSync(join(tmpdir(), 'pe-fake-smi-'));
  const path = join(dir, 'nvidia-smi');
  copyFileSync(join(REPO, 'packages/governor/test/fixtures/fake-nvidia-smi'), path);
  const put = (file: string, text: string): void => {
    writeFileSync(join(dir, `${file}.tmp`), text);
    renameSync(join(dir, `${file}.tmp`), join(dir, file));
  };
  const smi = {
    dir,
    path,
    gpus(rows: FakeGpuRow[]): void {
      put(
        'gpus.csv',
        rows
          .map(
            (g) =>
              `${g.index}, ${g.uuid}, ${g.totalMiB}, ${g.usedMiB}, ${g.totalMiB - g.usedMiB}, ${g.util ?? 0}, ${g.name ?? 'NVIDIA Fake L4'}\n`,
          )
          .join(''),
      );
    },
    apps(rows: Array<{ pid: number; uuid: string; usedMiB: number }>): void {
      put('apps.csv', rows.map((a) => `${a.pid}, ${a.uuid}, ${a.usedMiB}\n`).join(''));
    },
    /** How many times nvidia-smi was run. */
    calls(): number {
      try {
        return readFileSync(join(dir, 'calls.log'), 'utf8').trim().split('\n').length;
      } catch {
        return 0;
      }
    },
    remove(): void {
      rmSync(dir, { recursive: true, force: true });
    },
  };
  smi.apps([]);
  return smi;
}

export const mib = (n: number): number => n * MiB;

/** A GPU engine profile named "gpu" that runs the no-op fixture engine on any GPU, expecting this much GPU memory. */
export const noopGpuEngine = (expectedGpuMemoryBytes: string) => ({
  name: 'gpu',
  command: [process.execPath, FIXTURE_ENGINE, '--mode', 'noop'],
  gpus: 'all',
  expectedGpuMemoryBytes,
  expectedMemoryBytes: '64MiB',
});

export interface GpuWorkerOptions {
  redisUrl: string;
  storageDir: string;
  hostId: string;
  /** Engine profiles as in a worker config file (gpus, expectedGpuMemoryBytes, ...); all of them run. */
  engines: Array<{ name: string } & Record<string, unknown>>;
  /** The fake nvidia-smi's path (fakeNvidiaSmi().path), or a path with nothing there (no GPU visible). */
  nvidiaSmi: string;
  /** More worker settings (GPU_MARGIN, ...). */
  env?: Record<string, string>;
}

/** The real worker app reading its GPUs from `nvidiaSmi`, with the given engine profiles; resolves once it is ready. */
export async function startGpuWorker(o: GpuWorkerOptions): Promise<RunningWorker> {
  const cfg = join(mkdtempSync(join(tmpdir(), 'pe-wcfg-')), 'worker.json');
  writeFileSync(cfg, JSON.stringify({ engines: o.engines, run: o.engines.map((e) => e.name) }));
  const worker = await startWorker({
    REDIS_URL: o.redisUrl,
    STORAGE_DIR: o.storageDir,
    WORKER_CONFIG: cfg,
    HOST_ID: o.hostId,
    ADMISSION_CHECK_MS: '200',
    NVIDIA_SMI: o.nvidiaSmi,
    ...o.env,
  });
  await worker.waitForLog((r) => r.msg === 'worker ready');
  return worker;
}
