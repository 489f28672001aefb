import { describe, expect, it } from 'vitest';
import { fixture, governor, req, waitFor, alive } from './helpers.js';
import type { RecycleInfo } from '../src/index.js';

describe('recycling', () => {
  it('maxJobs: a process is replaced after its job count (jitter 0)', async () => {
    const g = governor([{ name: 'normal', command: fixture('normal'), maxJobs: 2 }]);
    const seen: RecycleInfo[] = [];
    g.on('recycle', (r: RecycleInfo) => seen.push(r));
    const pids: (number | undefined)[] = [];
    for (let i = 0; i < 5; i++) pids.push((await g.run('normal', req())).engine.pid);
    expect(pids[0]).toBe(pids[1]);
    expect(pids[2]).toBe(pids[3]);
    expect(pids[1]).not.toBe(pids[2]);
    expect(pids[3]).not.toBe(pids[4]);
    expect(seen.filter((r) => r.reason === 'max-jobs')).toHaveLength(2);
    expect(seen[0]!.figures).toMatchObject({ jobsDone: 2, maxJobs: 2 });
    expect(g.snapshot().recycles['max-jobs']).toBe(2);
    await waitFor(() => !alive(pids[0]), 5_000, 'the recycled process to exit');
  });

  it('maxJobs jitter stays within ± jitter', async () => {
    const g = governor([{ name: 'normal', command: fixture('normal'), maxJobs: 3, maxJobsJitter: 1 }]);
    const counts: number[] = [];
    g.on('recycle', (r: RecycleInfo) => counts.push(r.figures.maxJobs as number));
    for (let i = 0; i < 8; i++) await g.run('normal', req());
    expect(counts.length).toBeGreaterThanOrEqual(2);
    for (const c of counts) {
      expect(c).toBeGreaterThanOrEqual(2);
      expect(c).toBeLessThanOrEqual(4);
    }
  });

  it('idle TTL: an idle process is stopped, and started again on demand', async () => {
    const g = governor([{ name: 'normal', command: fixture('normal'), idleTtlMs: 200 }]);
    const first = (await g.run('normal', req())).engine.pid;
    const r = await new Promise<RecycleInfo>((res) => g.once('recycle', res));
    expect(r).toMatchObject({ reason: 'idle', pid: first });
    await waitFor(() => g.snapshot().processes.length === 0, 5_000, 'the idle process to go');
    expect(alive(first)).toBe(false);
    // Not replaced while nothing asks for it.
    expect(g.startHistory()).toHaveLength(1);
    const second = (await g.run('normal', req())).engine.pid;
    expect(second).not.toBe(first);
    expect(g.snapshot().recycles.idle).toBe(1);
  });
});
