import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HostState } from '@photoenhance/contracts';
import { REPO, cleanEnv, runCli, startLauncher, type RunningLauncher } from '../apps/cli/test/launch.js';
import { until } from './support/poll.js';

/**
 * Issue 12, "a compiled runtime": `npm start` (the bin) runs the gateway, worker and built-in engine as compiled
 * JavaScript (scripts/build-runtime.mjs, rebuilt by the bin when a source is newer), with no TypeScript loader in any
 * of them, and the gateway and worker stay small when idle.
 *
 * The goal is 80 MiB each. Measured on the 2-core VM (README, "Measured"): gateway about 86–92 MiB, worker about
 * 74–82 MiB after start-up (S3 client, sharp, bull-board and systeminformation loaded on first use); the budgets below
 * are those figures with headroom for a loaded machine, so the test guards against regressions (an eager import, the
 * loader coming back), while the README says where the goal stands.
 */
const MiB = 1024 * 1024;
const BUDGET = { gateway: 105 * MiB, worker: 95 * MiB };

function rssBytes(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

const cmdline = (pid: number): string[] => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);

/** Every live process whose parent is `pid` (the tsx loader would add an esbuild service process). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      // The ppid is the 2nd field after the parenthesised command name (which may contain spaces).
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) out.push(Number(d));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

function noLoader(pid: number): void {
  const argv = cmdline(pid);
  expect(argv.join(' ')).not.toMatch(/tsx|--import|--loader/);
  expect(argv.at(-1)).toMatch(/\/dist\/main\.js$/);
  const env = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
  expect(env.find((e) => e.startsWith('NODE_OPTIONS=') && /tsx/.test(e))).toBeUndefined();
  for (const c of childrenOf(pid)) expect(cmdline(c).join(' ')).not.toMatch(/esbuild|tsx/);
}

describe('compiled runtime (npm start)', () => {
  let launcher: RunningLauncher;
  let pids: { gateway: number; worker: number };

  beforeAll(async () => {
    launcher = await startLauncher({ env: { LOG_LEVEL: 'warn' } });
    const byName = Object.fromEntries(launcher.state().children.map((c) => [c.name, c.pid]));
    pids = { gateway: byName.gateway!, worker: byName.worker! };
    // Idle = started up: the worker's classic engine is up and waiting for work.
    await until(
      'the classic engine is idle',
      async () => {
        const res = await fetch(`${launcher.url}/v1/system`);
        const { hosts } = (await res.json()) as { hosts: HostState[] };
        return hosts[0]?.processes.some((p) => p.profile === 'classic' && p.state === 'idle') ?? false;
      },
      60_000,
      200,
    );
  }, 180_000);

  afterAll(async () => {
    await launcher?.dispose();
  });

  it('runs the compiled gateway, worker and engine with no TypeScript loader in them', () => {
    noLoader(pids.gateway);
    noLoader(pids.worker);
    expect(cmdline(pids.gateway).at(-1)).toBe(join(REPO, 'apps/gateway/dist/main.js'));
    expect(cmdline(pids.worker).at(-1)).toBe(join(REPO, 'apps/worker/dist/main.js'));
    const engines = childrenOf(pids.worker).filter((c) => cmdline(c).some((a) => a.includes('/engines/classic/')));
    expect(engines).toHaveLength(1);
    noLoader(engines[0]!);
    expect(cmdline(engines[0]!).at(-1)).toBe(join(REPO, 'engines/classic/dist/main.js'));
  });

  it('keeps the idle gateway and worker within their RSS budgets', () => {
    const rss = { gateway: rssBytes(pids.gateway), worker: rssBytes(pids.worker) };
    // Printed so a run shows the figures behind the README's.
    process.stdout.write(
      `idle RSS: gateway ${(rss.gateway / MiB).toFixed(1)} MiB, worker ${(rss.worker / MiB).toFixed(1)} MiB (goal 80 MiB each)\n`,
    );
    expect(rss.gateway).toBeLessThanOrEqual(BUDGET.gateway);
    expect(rss.worker).toBeLessThanOrEqual(BUDGET.worker);
  });
});

describe('the bin', () => {
  it('runs the compiled CLI by default and the sources with PHOTOENHANCE_DEV=1', async () => {
    const compiled = await runCli(['--version']);
    const dev = await runCli(['--version'], { env: cleanEnv({ PHOTOENHANCE_DEV: '1' }) });
    expect(compiled.code).toBe(0);
    expect(dev.code).toBe(0);
    expect(dev.stdout).toBe(compiled.stdout);
  });

  it('finds a fresh build fresh (the check the bin runs on every command builds nothing)', async () => {
    const script = join(REPO, 'scripts/build-runtime.mjs');
    const { ensureRuntimeBuilt, isRuntimeFresh } = (await import(script)) as {
      ensureRuntimeBuilt(o: { quiet: boolean }): Promise<boolean>;
      isRuntimeFresh(): boolean;
    };
    await ensureRuntimeBuilt({ quiet: true });
    expect(isRuntimeFresh()).toBe(true);
    expect(await ensureRuntimeBuilt({ quiet: true })).toBe(false);
  });
});
