import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CgroupSlot, detectEnforcement, EngineJobError, type RunHooks } from '../src/index.js';
import { cgroupChildren, fixture, governor, MiB, req, TEST_GROUP, v1Unavailable, waitFor } from './helpers.js';

const LIMIT = 256 * MiB;

async function failure(p: Promise<unknown>): Promise<EngineJobError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(EngineJobError);
  return e as EngineJobError;
}

/** Hooks that keep the highest RSS the grow fixture reported about itself. */
function rssSeen(): { hooks: RunHooks; max(): number } {
  let max = 0;
  return {
    hooks: {
      onLog: (l) => {
        if (l.startsWith('rss=')) max = Math.max(max, Number(l.slice(4)));
      },
    },
    max: () => max,
  };
}

describe('memory limit: watchdog mode', () => {
  it('stops an engine growing at 1.5 GB/s within limit + 128 MiB → ENGINE_MEMORY_LIMIT, replaced', async () => {
    const g = governor([{ name: 'grow', command: fixture('grow', '--rate=1.5e9'), memoryLimitBytes: LIMIT }], { enforcement: 'watchdog' });
    const seen = rssSeen();
    const e = await failure(g.run('grow', req(), seen.hooks));
    expect(e.code).toBe('ENGINE_MEMORY_LIMIT');
    expect(e.message).toMatch(
      /engine grow \(pid \d+\) passed its memory limit 256 MiB \(peak \d+ MiB, enforced by watchdog SIGTERM\/SIGKILL\)/,
    );
    expect(e.details.enforcedBy).toBe('watchdog');
    const peak = e.details.peakBytes as number;
    expect(peak).toBeGreaterThan(LIMIT);
    expect(peak).toBeLessThanOrEqual(LIMIT + 128 * MiB);
    // The engine's own last word on its RSS, independent of our sampler.
    expect(seen.max()).toBeLessThanOrEqual(LIMIT + 128 * MiB);
    expect(g.snapshot().recycles['memory-limit']).toBe(1);
    await waitFor(() => g.snapshot().processes.some((p) => p.state === 'idle'), 10_000, 'a replacement');
    expect(g.snapshot().enforcement.mode).toBe('watchdog');
  });

  it('recycles between jobs an engine past the soft mark (leak), before its next job', async () => {
    const g = governor([{ name: 'leak', command: fixture('leak', '--leak=40'), memoryLimitBytes: LIMIT, softLimitRatio: 0.5 }], {
      enforcement: 'watchdog',
    });
    const recycled: string[] = [];
    g.on('recycle', (r) => recycled.push(r.reason));
    const pids: (number | undefined)[] = [];
    for (let i = 0; i < 6; i++) pids.push((await g.run('leak', req())).engine.pid);
    expect(recycled).toContain('soft-limit');
    expect(new Set(pids).size).toBeGreaterThan(1);
    // Every job succeeded; the process that passed the mark took no further job.
    const first = pids[0];
    const firstJobs = pids.filter((p) => p === first).length;
    expect(firstJobs).toBeGreaterThanOrEqual(2);
    expect(firstJobs).toBeLessThan(6);
  });

  it('an engine spiking past the limit during start-up is a failed start, never given a job', async () => {
    const g = governor([{ name: 'spike', command: fixture('spike', '--spike=480', '--hold=2000'), memoryLimitBytes: LIMIT }], {
      startFailureLimit: 1,
    });
    const e = await failure(g.run('spike', req()));
    expect(e.code).toBe('ENGINE_START_FAILED');
    expect(e.message).toMatch(/passed its memory limit 256 MiB during start-up/);
    expect(g.startHistory().every((s) => s.outcome === 'failed')).toBe(true);
  });
});

const v1Skip = v1Unavailable();
describe.skipIf(v1Skip !== undefined)(`memory limit: cgroup-v1 mode${v1Skip ? ` (skipped: ${v1Skip})` : ''}`, () => {
  it('the kernel OOM-kills the engine at the limit: usage never passes it → ENGINE_MEMORY_LIMIT, group removed', async () => {
    const g = governor([{ name: 'grow', command: fixture('grow', '--rate=1.5e9'), memoryLimitBytes: LIMIT }], { enforcement: 'cgroup-v1' });
    await g.start();
    expect(g.snapshot().enforcement.mode).toBe('cgroup-v1');
    const parent = `/sys/fs/cgroup/memory/${TEST_GROUP}`;
    const run = g.run('grow', req());
    // While it runs, the engine sits in its own group with the limit written.
    const dir = await waitFor(
      () => {
        const d = cgroupChildren(parent).find((n) => n.startsWith(`pe-grow-${process.pid}-`));
        return d ? join(parent, d) : undefined;
      },
      10_000,
      'the engine cgroup',
    );
    expect(Number(readFileSync(join(dir, 'memory.limit_in_bytes'), 'utf8'))).toBe(LIMIT);
    const e = await failure(run);
    expect(e.code).toBe('ENGINE_MEMORY_LIMIT');
    expect(e.message).toMatch(/passed its memory limit 256 MiB \(peak \d+ MiB, enforced by cgroup-v1 OOM kill\)/);
    const kernel = e.details.kernel as { oomKills: number; peakBytes: number; limitBytes: number };
    expect(kernel.oomKills).toBeGreaterThanOrEqual(1);
    expect(kernel.limitBytes).toBe(LIMIT);
    expect(kernel.peakBytes).toBeLessThanOrEqual(LIMIT);
    expect(existsSync(dir)).toBe(false);
    await waitFor(() => g.snapshot().processes.some((p) => p.state === 'idle' && p.enforcement === 'cgroup-v1'), 10_000, 'a replacement');
  });
});

describe.skipIf(v1Skip !== undefined)(`shared parent group: real cgroup v1${v1Skip ? ` (skipped: ${v1Skip})` : ''}`, () => {
  it('another governor on the host closing (and removing the empty shared parent) does not drop this one to the watchdog', async () => {
    // A parent of this test's own: other files' governors share TEST_GROUP, so it would not be empty here.
    const group = `${TEST_GROUP}-shared-${process.pid}`;
    const parent = `/sys/fs/cgroup/memory/${group}`;
    const grow = { name: 'grow', command: fixture('grow', '--rate=1.5e9'), memoryLimitBytes: LIMIT };
    const a = governor([grow], { enforcement: 'cgroup-v1', cgroupGroup: group });
    await a.start();
    // A second worker on the same host, idle (no engine groups), stops: the parent is empty, so it goes.
    const b = governor([{ name: 'normal', command: fixture('normal') }], { enforcement: 'cgroup-v1', cgroupGroup: group });
    await b.start();
    await b.close();
    expect(existsSync(parent)).toBe(false);
    // The first still puts its engine in a group of its own under the limit, and the kernel enforces it.
    const e = await failure(a.run('grow', req()));
    expect(e.code).toBe('ENGINE_MEMORY_LIMIT');
    expect(e.details.enforcedBy).toBe('cgroup-v1');
    expect((e.details.kernel as { limitBytes: number }).limitBytes).toBe(LIMIT);
  });

  it('a leftover empty group of the same name (a dead worker whose pid came round again) is replaced, not fatal', async () => {
    const plan = detectEnforcement({ requested: 'cgroup-v1', group: TEST_GROUP });
    const name = `stale-${process.pid}-1`;
    const left = join(plan.v1MemoryDir!, `pe-${name}`);
    mkdirSync(left);
    writeFileSync(join(left, 'memory.limit_in_bytes'), String(64 * MiB));
    const slot = CgroupSlot.create(plan, name, { limitBytes: LIMIT });
    expect(slot.memoryDir).toBe(left);
    expect(slot.limitBytes()).toBe(LIMIT);
    expect(await slot.remove()).toBe(true);
    expect(existsSync(left)).toBe(false);
  });
});
