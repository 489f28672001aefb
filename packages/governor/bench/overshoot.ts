/**
 * How far past its memory limit an engine gets before it is stopped, per enforcement mode and growth rate, how long
 * from crossing the limit until the job is rejected, and what sampling costs. Rows are plain objects
 * ({ metric, value, unit, ...figures }); bench/run.ts prints them. Run alone: `npx tsx packages/governor/bench/overshoot.ts`.
 */
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { readFileSync } from 'node:fs';
import pidusage from 'pidusage';
import pino from 'pino';
import si from 'systeminformation';
import { execa } from 'execa';
import { DEFAULT_OPTIONS, FALLBACK_BG_TILE, type JobOptions } from '@photoenhance/contracts';
import { detectEnforcement, type EngineJobError, Governor, MemoryWatchdog, rssOf, type RunRequest } from '../src/index.js';

export interface Row {
  metric: string;
  value: number;
  unit: string;
  [figure: string]: string | number | boolean | undefined;
}

const MiB = 1024 * 1024;
const LIMIT = 512 * MiB;
/** The schema's defaults, resolved as a job carries them (no background upsampler, PNG, a fixed tile). */
const RESOLVED_OPTIONS: JobOptions = { ...DEFAULT_OPTIONS, bgUpsampler: 'none', bgTile: FALLBACK_BG_TILE, format: 'png' };
const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '..', 'test', 'fixtures');
const RATES = [0.5e9, 1e9, 2e9];

const request = (n: number): RunRequest => ({
  id: `bench-${n}`,
  input: '/dev/null',
  output: `/tmp/bench-${n}.png`,
  options: RESOLVED_OPTIONS,
});

interface Trial {
  overshootBytes: number;
  selfMaxBytes: number;
  peakBytes: number;
  kernelPeakBytes?: number;
  oomKills?: number;
  achievedGBps: number;
  rejectMs: number;
  code: string;
}

/** One growing engine against one limit: what it reported about itself (timestamped on arrival) and how it ended. */
async function trial(mode: 'watchdog' | 'cgroup-v1', rate: number, n: number): Promise<Trial> {
  const g = new Governor({
    hostId: 'bench',
    logger: pino({ level: 'silent' }),
    prewarm: false,
    enforcement: mode,
    cgroupGroup: 'photoenhance-bench',
    admission: { minAvailableBytes: 0 },
    profiles: [
      {
        name: 'grow',
        command: [process.execPath, join(FIXTURES, 'grow.mjs'), `--rate=${rate}`],
        memoryLimitBytes: LIMIT,
        expectedMemoryBytes: 64 * MiB,
        stopGraceMs: 500,
        idleTtlMs: 0,
      },
    ],
  });
  const reports: { at: number; rss: number }[] = [];
  try {
    const err = await g
      .run('grow', request(n), {
        onLog: (l) => (l.startsWith('rss=') ? reports.push({ at: performance.now(), rss: Number(l.slice(4)) }) : undefined),
      })
      .then(
        () => undefined,
        (e: unknown) => e as EngineJobError,
      );
    const rejectedAt = performance.now();
    const selfMax = Math.max(0, ...reports.map((r) => r.rss));
    const crossing = reports.find((r) => r.rss > LIMIT) ?? reports.at(-1);
    const first = reports.find((r) => r.rss > 128 * MiB) ?? reports[0];
    const last = reports.at(-1);
    const achieved = first && last && last.at > first.at ? ((last.rss - first.rss) / (last.at - first.at)) * 1000 : 0;
    const kernel = err?.details.kernel as { peakBytes?: number; oomKills?: number } | undefined;
    const peak = Number(err?.details.peakBytes ?? 0);
    // Watchdog: the most the tree was seen (by itself or by us) above the limit. cgroup: the kernel's own high-water
    // mark of what it charges the group (the engine's self-reported RSS also counts shared file pages charged elsewhere).
    const top = mode === 'watchdog' ? Math.max(selfMax, peak) : (kernel?.peakBytes ?? selfMax);
    return {
      overshootBytes: Math.max(0, top - LIMIT),
      selfMaxBytes: selfMax,
      peakBytes: peak,
      ...(kernel?.peakBytes !== undefined ? { kernelPeakBytes: kernel.peakBytes } : {}),
      ...(kernel?.oomKills !== undefined ? { oomKills: kernel.oomKills } : {}),
      achievedGBps: achieved / 1e9,
      rejectMs: crossing ? rejectedAt - crossing.at : NaN,
      code: err?.code ?? 'none',
    };
  } finally {
    await g.close();
  }
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

async function overshootRows(trials: number): Promise<Row[]> {
  const rows: Row[] = [];
  const modes: ('watchdog' | 'cgroup-v1')[] = ['watchdog'];
  const v1 = detectEnforcement({ requested: 'cgroup-v1', group: 'photoenhance-bench' });
  if (v1.mode === 'cgroup-v1') modes.push('cgroup-v1');
  else rows.push({ metric: 'cgroup-v1 rows skipped', value: 0, unit: '', note: v1.reason });
  let n = 0;
  for (const mode of modes) {
    for (const rate of RATES) {
      const ts: Trial[] = [];
      for (let i = 0; i < trials; i++) ts.push(await trial(mode, rate, n++));
      const worst = ts.reduce((a, b) => (b.overshootBytes > a.overshootBytes ? b : a));
      const common = {
        mode,
        targetGBps: rate / 1e9,
        achievedGBps: +median(ts.map((t) => t.achievedGBps)).toFixed(2),
        limitMiB: LIMIT / MiB,
        trials,
        codes: [...new Set(ts.map((t) => t.code))].join(','),
      };
      rows.push({
        metric: `overshoot ${mode} @${rate / 1e9} GB/s (worst of ${trials})`,
        value: +(worst.overshootBytes / MiB).toFixed(1),
        unit: 'MiB',
        ...common,
        selfReportedMaxMiB: +(worst.selfMaxBytes / MiB).toFixed(1),
        ...(worst.kernelPeakBytes !== undefined
          ? { kernelPeakMiB: +(worst.kernelPeakBytes / MiB).toFixed(1), oomKills: worst.oomKills }
          : {}),
      });
      rows.push({
        metric: `limit crossed → job rejected, ${mode} @${rate / 1e9} GB/s (median)`,
        value: +median(ts.map((t) => t.rejectMs)).toFixed(1),
        unit: 'ms',
        ...common,
      });
    }
  }
  return rows;
}

/** CPU the sampler spends per engine: far from the limit (1 s interval) and near it (5 ms), and per-read costs. */
async function costRows(): Promise<Row[]> {
  const child = execa(process.execPath, ['-e', 'const k = Buffer.alloc(64 * 1024 * 1024, 1); setInterval(() => k.length, 1000)'], {
    stdin: 'ignore',
    stdout: 'ignore',
    stderr: 'ignore',
    reject: false,
  });
  const pid = child.pid!;
  try {
    await new Promise((r) => setTimeout(r, 300));
    const rows: Row[] = [];
    const perCall = async (name: string, fn: () => unknown | Promise<unknown>, calls: number): Promise<number> => {
      const t0 = process.cpuUsage();
      const w0 = performance.now();
      for (let i = 0; i < calls; i++) await fn();
      const cpu = process.cpuUsage(t0);
      const wall = (performance.now() - w0) / calls;
      rows.push({
        metric: `cost of one ${name}`,
        value: +((cpu.user + cpu.system) / calls / 1000).toFixed(4),
        unit: 'ms CPU',
        wallMs: +wall.toFixed(4),
      });
      return wall;
    };
    await perCall('/proc/<pid>/statm read', () => rssOf(pid), 5000);
    const wd = new MemoryWatchdog({ pid, limitBytes: 8 * 1024 ** 3, onOver: () => undefined });
    await perCall('watchdog sample (tree scan cached)', () => wd.sampleNow(), 2000);
    await perCall(
      'process-tree scan of /proc',
      () => new MemoryWatchdog({ pid, limitBytes: 1, treeRefreshMs: 0, onOver: () => undefined }).sampleNow(),
      300,
    );
    await perCall('pidusage(pid)', () => pidusage(pid), 300);
    await perCall('/proc/meminfo read', () => readFileSync('/proc/meminfo', 'utf8'), 2000);
    await perCall('si.mem()', () => si.mem(), 200);
    // The sampler running for real, 2 s each: far from the limit vs. within 10 MiB of it.
    for (const [label, limit] of [
      ['far from the limit (1 s interval)', 8 * 1024 ** 3],
      ['near the limit (5 ms interval)', rssOf(pid) + 10 * MiB],
    ] as const) {
      const dog = new MemoryWatchdog({ pid, limitBytes: limit, onOver: () => undefined });
      dog.start();
      await new Promise((r) => setTimeout(r, 2000));
      dog.stop();
      rows.push({
        metric: `sampler CPU per engine, ${label}`,
        value: +(dog.cpuMicros / 2000 / 10).toFixed(4),
        unit: '% of one core',
        samples: dog.samples,
      });
    }
    return rows;
  } finally {
    child.kill('SIGKILL');
    await child;
  }
}

/** Where the trusted systems stand: check interval x 2 GB/s growth = how far a tree can get before they look. */
function anchorRows(): Row[] {
  const at2 = (s: number): number => +((s * 2e9) / MiB).toFixed(0);
  return [
    {
      metric: 'anchor: superlance memmon (60 s tick)',
      value: at2(60),
      unit: 'MiB worst overshoot at 2 GB/s',
      note: 'in practice the kernel OOM killer acts first',
    },
    {
      metric: 'anchor: uWSGI evil-reload-on-rss (3 s)',
      value: at2(3),
      unit: 'MiB worst overshoot at 2 GB/s',
      note: 'SIGKILL after the sample',
    },
    {
      metric: 'anchor: Ray memory monitor (250 ms)',
      value: at2(0.25),
      unit: 'MiB worst overshoot at 2 GB/s',
      note: 'node-level 0.95 threshold, kills newest task',
    },
    {
      metric: 'anchor: Celery max_memory_per_child (after the task)',
      value: Infinity,
      unit: 'MiB',
      note: 'checked only after the task ends: no bound during the task',
    },
  ];
}

export async function benchOvershoot(opts: { trials?: number } = {}): Promise<Row[]> {
  const trials = opts.trials ?? (process.env.BENCH_QUICK === '1' ? 1 : 3);
  return [...(await overshootRows(trials)), ...(await costRows()), ...anchorRows()];
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const rows = await benchOvershoot();
  console.table(rows.map(({ metric, value, unit, ...rest }) => ({ metric, value, unit, ...rest })));
}
