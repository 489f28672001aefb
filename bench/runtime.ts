/**
 * The compiled runtime against TypeScript through tsx (issue 12): idle RSS of the gateway and the worker after start-up,
 * and `photoenhance --help` wall time. `npm run bench -- runtime`.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { HostState } from '@photoenhance/contracts';
import { freePort } from '../apps/cli/test/launch.js';
import { until } from '../test/support/poll.js';
import { startTestRedis } from '../test/support/redis.js';
import { REPO } from '../test/support/stack.js';
import type { Row } from './spine.js';

const MiB = 1024 * 1024;
type Runtime = 'compiled' | 'tsx';

/** How `npm start` runs an app in each runtime (apps/cli/src/launcher/launcher.ts, appArgv); tsx as before the build. */
function argv(runtime: Runtime, app: 'gateway' | 'worker'): string[] {
  return runtime === 'compiled'
    ? ['--max-semi-space-size=2', join(REPO, `apps/${app}/dist/main.js`)]
    : ['--import', 'tsx', join(REPO, `apps/${app}/src/main.ts`)];
}

const rss = (pid: number): number => Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;

async function idleRss(runtime: Runtime): Promise<{ gateway: number; worker: number }> {
  const redis = await startTestRedis();
  const storage = mkdtempSync(join(tmpdir(), 'pe-bench-runtime-'));
  const port = await freePort();
  const env = {
    ...process.env,
    REDIS_URL: redis.url,
    STORAGE_DIR: storage,
    HOST: '127.0.0.1',
    PORT: String(port),
    LOG_LEVEL: 'warn',
    ENFORCEMENT: 'watchdog',
  };
  const procs: ChildProcess[] = [];
  try {
    for (const app of ['gateway', 'worker'] as const)
      procs.push(spawn(process.execPath, argv(runtime, app), { cwd: REPO, env, stdio: 'ignore' }));
    // Idle = started up: the gateway answers and the worker's engine waits for work.
    await until(
      `${runtime}: the classic engine idle behind the gateway`,
      async () => {
        const res = await fetch(`http://127.0.0.1:${port}/v1/system`).catch(() => undefined);
        if (!res?.ok) return false;
        const { hosts } = (await res.json()) as { hosts: HostState[] };
        return hosts[0]?.processes.some((p) => p.profile === 'classic' && p.state === 'idle') ?? false;
      },
      120_000,
      200,
    );
    return { gateway: rss(procs[0]!.pid!), worker: rss(procs[1]!.pid!) };
  } finally {
    for (const p of procs) p.kill('SIGTERM');
    await Promise.all(procs.map((p) => (p.exitCode === null && p.signalCode === null ? new Promise((r) => p.once('exit', r)) : undefined)));
    await redis.close();
    rmSync(storage, { recursive: true, force: true });
  }
}

function helpMs(runtime: Runtime): number {
  const env = { ...process.env, PHOTOENHANCE_DEV: runtime === 'tsx' ? '1' : '0' };
  let best = Infinity;
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    spawnSync(process.execPath, [join(REPO, 'apps/cli/bin/photoenhance.js'), '--help'], { env, stdio: 'ignore' });
    best = Math.min(best, performance.now() - t0);
  }
  return best;
}

export async function benchRuntime(): Promise<Row[]> {
  // Builds when stale, as `npm start` does.
  spawnSync(process.execPath, [join(REPO, 'scripts/build-runtime.mjs')], { stdio: 'inherit' });
  const rows: Row[] = [];
  const section = 'runtime (idle after start-up)';
  for (const runtime of ['compiled', 'tsx'] as const) {
    const r = await idleRss(runtime);
    rows.push({
      section,
      metric: `gateway RSS, ${runtime}`,
      value: r.gateway / MiB,
      unit: 'MiB',
      goal: runtime === 'compiled' ? '≤ 80' : '',
    });
    rows.push({
      section,
      metric: `worker RSS, ${runtime}`,
      value: r.worker / MiB,
      unit: 'MiB',
      goal: runtime === 'compiled' ? '≤ 80' : '',
    });
  }
  for (const runtime of ['compiled', 'tsx'] as const)
    rows.push({
      section,
      metric: `photoenhance --help, ${runtime} (best of 3)`,
      value: helpMs(runtime),
      unit: 'ms',
      goal: runtime === 'compiled' ? '≤ 1000' : '',
    });
  return rows;
}
