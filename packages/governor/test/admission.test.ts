import { describe, expect, it } from 'vitest';
import type { AdmissionState, HostMemory } from '@photoenhance/contracts';
import { Admission, readHostMemory, readPressureSome10, readProcMeminfo } from '../src/index.js';
import { fixture, governor, MiB, req, waitFor } from './helpers.js';

const GiB = 1024 * MiB;
const mem = (availableGiB: number, totalGiB = 32, pressure?: number): HostMemory => ({
  totalBytes: totalGiB * GiB,
  availableBytes: availableGiB * GiB,
  usedRatio: (totalGiB - availableGiB) / totalGiB,
  ...(pressure === undefined ? {} : { pressureSome10: pressure }),
});

describe('admission decision', () => {
  it('floor defaults to max(2 GiB, the largest expected footprint)', () => {
    expect(new Admission({}, 1 * GiB).floor()).toBe(2 * GiB);
    expect(new Admission({}, 3 * GiB).floor()).toBe(3 * GiB);
    expect(new Admission({ minAvailableBytes: 5 * GiB }, 3 * GiB).floor()).toBe(5 * GiB);
  });

  it('holds for low MemAvailable, high used ratio, high pressure — in that order — and records transitions', () => {
    const a = new Admission({ maxUsedRatio: 0.8, maxPressureSome10: 10 }, GiB);
    expect(a.memoryVerdict(mem(1))?.reason).toBe('MEMORY_AVAILABLE_LOW');
    expect(a.memoryVerdict(mem(5))?.reason).toBe('MEMORY_USED_HIGH'); // 27/32 used
    expect(a.memoryVerdict(mem(20, 32, 25))?.reason).toBe('MEMORY_PRESSURE_HIGH');
    expect(a.memoryVerdict(mem(20, 32, 2))).toBeUndefined();
    expect(a.update(mem(20))).toBeUndefined(); // no change
    expect(a.update(mem(1))).toMatchObject({ state: 'holding', reason: 'MEMORY_AVAILABLE_LOW' });
    expect(a.update(mem(1.5))).toBeUndefined();
    expect(a.update(mem(20), { reason: 'ENGINE_START_FAILED', detail: 'x' })).toMatchObject({
      state: 'holding',
      reason: 'ENGINE_START_FAILED',
    });
    expect(a.update(mem(20))).toMatchObject({ state: 'admitting', reason: 'ok' });
    expect(a.transitions.map((t) => t.reason)).toEqual(['MEMORY_AVAILABLE_LOW', 'ENGINE_START_FAILED', 'ok']);
    for (let i = 0; i < 60; i++) a.update(mem(i % 2 ? 1 : 20));
    expect(a.transitions).toHaveLength(50);
  });

  it('can afford a spawn only when MemAvailable - floor >= expected', () => {
    const a = new Admission({ minAvailableBytes: 2 * GiB }, GiB);
    expect(a.canAfford(mem(3), GiB)).toBe(true);
    expect(a.canAfford(mem(2.5), GiB)).toBe(false);
  });

  it('reads /proc/meminfo and PSI', async () => {
    expect(readProcMeminfo('MemTotal:       24684092 kB\nMemFree: 1 kB\nMemAvailable:   24090132 kB\n')).toEqual({
      totalBytes: 24684092 * 1024,
      availableBytes: 24090132 * 1024,
    });
    expect(readPressureSome10('some avg10=1.25 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n')).toBe(
      1.25,
    );
    const m = await readHostMemory();
    expect(m.totalBytes).toBeGreaterThan(0);
    expect(m.availableBytes).toBeLessThanOrEqual(m.totalBytes);
  });
});

describe('admission in the governor', () => {
  it('holds when the floor is raised above MemAvailable (no spawn), resumes when it is lowered', async () => {
    const g = governor([{ name: 'normal', command: fixture('normal') }], { admission: { checkIntervalMs: 50 } });
    await g.start();
    expect(g.admitting()).toBe(true);
    const events: AdmissionState[] = [];
    g.on('admission', (s) => events.push(s));
    const total = g.snapshot().memory.totalBytes;
    const held = await g.setAdmission({ minAvailableBytes: total * 2 });
    expect(held).toMatchObject({ state: 'holding', reason: 'MEMORY_AVAILABLE_LOW' });
    expect(g.admitting()).toBe(false);
    expect(events).toHaveLength(1);
    // A job arriving anyway waits: no engine is started while holding.
    let settled = false;
    const run = g.run('normal', req()).finally(() => (settled = true));
    const deadline = Date.now() + 300; // several admission ticks
    while (Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      expect(g.startHistory()).toEqual([]);
      expect(settled).toBe(false);
    }
    const resumed = await g.setAdmission({ minAvailableBytes: 64 * MiB });
    expect(resumed).toMatchObject({ state: 'admitting', reason: 'ok' });
    await expect(run).resolves.toMatchObject({ done: { type: 'done' } });
    expect(events.map((e) => e.state)).toEqual(['holding', 'admitting']);
    expect(g.snapshot().transitions.map((t) => t.state)).toEqual(['holding', 'admitting']);
  });

  it('running jobs continue while holding', async () => {
    const g = governor([{ name: 'normal', command: fixture('normal', '--ms=300') }]);
    const run = g.run('normal', req());
    await waitFor(() => g.snapshot().processes.some((p) => p.state === 'busy'), 10_000, 'busy');
    await g.setAdmission({ minAvailableBytes: g.snapshot().memory.totalBytes * 2 });
    await expect(run).resolves.toMatchObject({ done: { type: 'done' } });
    // And an idle process keeps serving: holding stops new engines, not work on warm ones.
    await expect(g.run('normal', req())).resolves.toBeTruthy();
  });

  it('a spawn waits until the host can afford the profile expected footprint', async () => {
    const g = governor([{ name: 'big', command: fixture('normal'), expectedMemoryBytes: 1024 * GiB }], {
      admission: { checkIntervalMs: 50, minAvailableBytes: 0 },
    });
    await g.start();
    expect(g.admitting()).toBe(true);
    let settled = false;
    const run = g.run('big', req()).finally(() => (settled = true));
    await new Promise((r) => setTimeout(r, 200));
    expect(settled).toBe(false);
    expect(g.startHistory()).toEqual([]);
    await g.close();
    await expect(run).rejects.toMatchObject({ code: 'ENGINE_FAILED' });
  });
});
