import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { afterEach, expect } from 'vitest';
import { DEFAULT_OPTIONS, FALLBACK_BG_TILE, type JobOptions } from '@photoenhance/contracts';
import { detectEnforcement, Governor, type GovernorInit, type ProfileInput, type RunRequest } from '../src/index.js';
import { poll } from '../../../test/support/poll.js';

export const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), 'fixtures');
export const MiB = 1024 * 1024;
/** Test governors make their cgroups here, apart from any real deployment's "photoenhance". */
export const TEST_GROUP = 'photoenhance-test';

/** argv of a fixture engine. */
export const fixture = (name: string, ...args: string[]): string[] => [process.execPath, join(FIXTURES, `${name}.mjs`), ...args];

/** The schema's defaults, resolved as a job carries them (no background upsampler, PNG, a fixed tile). */
export const OPTIONS: JobOptions = { ...DEFAULT_OPTIONS, bgUpsampler: 'none', bgTile: FALLBACK_BG_TILE, format: 'png' };

let jobSeq = 0;
const outDir = mkdtempSync(join(tmpdir(), 'pe-governor-'));
export const req = (input = '/tmp/in.png', extra: Partial<RunRequest> = {}): RunRequest => {
  const id = `job-${++jobSeq}`;
  return { id, input, output: join(outDir, `${id}.png`), options: OPTIONS, ...extra };
};

export const logger = pino({ level: process.env.GOVERNOR_TEST_LOG ?? 'silent' });

const made: Governor[] = [];

/** A governor closed (and checked for leftovers) after the test. Defaults: no pre-warm, small limits, test cgroup. */
export function governor(profiles: ProfileInput[], extra: Partial<GovernorInit> = {}): Governor {
  const g = new Governor({
    hostId: 'test',
    logger,
    prewarm: false,
    cgroupGroup: TEST_GROUP,
    enforcement: 'auto',
    startBackoff: { baseMs: 200, maxMs: 2_000 },
    ...extra,
    profiles: profiles.map((p) => ({ memoryLimitBytes: 256 * MiB, expectedMemoryBytes: 64 * MiB, stopGraceMs: 500, idleTtlMs: 0, ...p })),
  });
  made.push(g);
  return g;
}

export const alive = (pid: number | undefined): boolean => {
  if (pid === undefined) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** Poll until pred() holds, or fail after timeoutMs (no fixed sleeps): the one polling helper, test/support/poll.ts. */
export function waitFor<T>(
  pred: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 10_000,
  what = 'condition',
): Promise<T> {
  return poll(what, pred, { timeoutMs, everyMs: 10, retryErrors: false });
}

/**
 * The names in a test parent cgroup; none when it is not there. Test files run in parallel and share the parent, which a
 * governor removes when it leaves it empty: it can go between a look and a read.
 */
export function cgroupChildren(parent: string): string[] {
  try {
    return readdirSync(parent);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

/** This process's test cgroups still on disk. */
export function leftoverCgroups(): string[] {
  const out: string[] = [];
  for (const parent of [`/sys/fs/cgroup/memory/${TEST_GROUP}`, `/sys/fs/cgroup/cpu/${TEST_GROUP}`]) {
    for (const d of cgroupChildren(parent)) if (d.startsWith('pe-') && d.includes(`-${process.pid}-`)) out.push(join(parent, d));
  }
  return out;
}

/** Why cgroup-v1 tests cannot run here, or undefined when they can. */
export function v1Unavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'not root: cgroup v1 groups cannot be made';
  if (!existsSync('/sys/fs/cgroup/memory/memory.limit_in_bytes')) return 'no cgroup v1 memory hierarchy at /sys/fs/cgroup/memory';
  const plan = detectEnforcement({ requested: 'cgroup-v1', group: TEST_GROUP });
  return plan.mode === 'cgroup-v1' ? undefined : plan.reason;
}

afterEach(async () => {
  const gs = made.splice(0);
  await Promise.all(gs.map((g) => g.close()));
  for (const g of gs) {
    const pids = g.startHistory().map((s) => s.pid);
    const living = pids.filter(alive);
    expect(living, 'engine processes left behind').toEqual([]);
  }
  expect(leftoverCgroups(), 'cgroup dirs left behind').toEqual([]);
});
