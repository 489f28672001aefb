import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { AdmissionState } from '@photoenhance/contracts';
import { EngineJobError } from '../src/index.js';
import { fixture, governor, req, waitFor } from './helpers.js';

describe('start-up', () => {
  it('starts engines strictly one at a time across profiles (poolSize 3 + another profile)', async () => {
    const g = governor([
      { name: 'a', command: fixture('spike', '--spike=64', '--hold=150', '--ms=4000'), poolSize: 3 },
      { name: 'b', command: fixture('spike', '--spike=32', '--hold=100', '--ms=4000'), poolSize: 2 },
    ]);
    const runs = [...Array(3)].map(() => g.run('a', req())).concat([...Array(2)].map(() => g.run('b', req())));
    const results = await Promise.all(runs);
    expect(new Set(results.map((r) => r.engine.pid)).size).toBe(5);
    const starts = g.startHistory().sort((x, y) => x.spawnAt - y.spawnAt);
    expect(starts).toHaveLength(5);
    expect(starts.every((s) => s.outcome === 'ready')).toBe(true);
    for (let i = 1; i < starts.length; i++) {
      // Each spawn happens after the previous start-up settled (ready or failed).
      expect(starts[i]!.spawnAt).toBeGreaterThanOrEqual(starts[i - 1]!.settledAt);
    }
    // Start-up really took time (spike + hold), so the check above is not vacuous.
    expect(starts.every((s) => s.settledAt - s.spawnAt >= 100)).toBe(true);
  });

  it('pre-warms one process per profile in start(), one at a time', async () => {
    const g = governor(
      [
        { name: 'a', command: fixture('normal') },
        { name: 'b', command: fixture('normal') },
      ],
      { prewarm: true },
    );
    await g.start();
    await waitFor(() => g.snapshot().processes.filter((p) => p.state === 'idle').length === 2, 10_000, 'two warm engines');
    const [s1, s2] = g.startHistory();
    expect(s2!.spawnAt).toBeGreaterThanOrEqual(s1!.settledAt);
  });

  it('3 failed starts → ENGINE_START_FAILED with the stderr tail, holding, exponential backoff', async () => {
    const g = governor(
      [
        { name: 'broken', command: fixture('no-ready', '--exit=2') },
        { name: 'ok', command: fixture('normal') },
      ],
      {
        startFailureLimit: 3,
        startBackoff: { baseMs: 300, maxMs: 5_000 },
      },
    );
    const events: AdmissionState[] = [];
    g.on('admission', (s) => events.push(s));
    const e = await g.run('broken', req()).catch((err: EngineJobError) => err);
    expect(e).toBeInstanceOf(EngineJobError);
    expect((e as EngineJobError).code).toBe('ENGINE_START_FAILED');
    expect((e as EngineJobError).retryable).toBe(true);
    expect((e as EngineJobError).message).toContain('failed to start 3 times in a row');
    expect((e as EngineJobError).message).toContain('exited with code 2 before it was ready');
    expect((e as EngineJobError).message).toContain('FileNotFoundError: /models/missing.pth');
    expect(g.admitting()).toBe(false);
    expect(g.snapshot().admission).toMatchObject({ state: 'holding', reason: 'ENGINE_START_FAILED' });
    expect(events.at(-1)).toMatchObject({ state: 'holding', reason: 'ENGINE_START_FAILED' });
    // Another engine on the host is still fine.
    expect(g.admitting('ok')).toBe(true);
    expect(g.admitting('broken')).toBe(false);
    await expect(g.run('ok', req())).resolves.toBeTruthy();
    // A job for the failing engine during backoff is refused at once.
    expect(await g.run('broken', req()).catch((err: EngineJobError) => err.code)).toBe('ENGINE_START_FAILED');
    // The governor probes after the backoff (300 ms, then 600 ms): never a hot loop.
    await waitFor(() => g.startHistory().filter((s) => s.profile === 'broken').length >= 5, 10_000, 'two probes');
    const broken = g.startHistory().filter((s) => s.profile === 'broken');
    expect(broken[1]!.spawnAt - broken[0]!.settledAt).toBeLessThan(300); // before the limit: retried at once
    // The backoff runs from the failure, which comes after the attempt's spawn and before the start queue stamps its
    // settledAt (on a loaded machine that stamp was 14 ms late): measured from the spawn, the bound is exact.
    expect(broken[3]!.spawnAt - broken[2]!.spawnAt).toBeGreaterThanOrEqual(300);
    expect(broken[4]!.spawnAt - broken[3]!.spawnAt).toBeGreaterThanOrEqual(600);
  });

  it('a successful probe after the backoff lifts ENGINE_START_FAILED holding', async () => {
    const state = join(mkdtempSync(join(tmpdir(), 'pe-flaky-')), 'count');
    const g = governor([{ name: 'flaky', command: fixture('flaky', '--fail-times=3', `--state=${state}`) }], {
      startFailureLimit: 3,
      startBackoff: { baseMs: 200, maxMs: 1_000 },
    });
    const events: AdmissionState[] = [];
    g.on('admission', (s) => events.push(s));
    expect(await g.run('flaky', req()).catch((err: EngineJobError) => err.code)).toBe('ENGINE_START_FAILED');
    await waitFor(() => g.admitting(), 10_000, 'admitting again');
    expect(events.map((e) => `${e.state}:${e.reason}`)).toEqual(['holding:ENGINE_START_FAILED', 'admitting:ok']);
    // The probe's process is warm and takes the next job.
    const r = await g.run('flaky', req());
    expect(r.timings.waitMs).toBeLessThan(100);
    expect(g.snapshot().transitions.map((t) => t.reason)).toEqual(['ENGINE_START_FAILED', 'ok']);
  });

  it('an engine that never sends ready is killed at startupTimeoutMs and discarded', async () => {
    const g = governor([{ name: 'silent', command: fixture('no-ready'), startupTimeoutMs: 1_000 }], { startFailureLimit: 2 });
    const t0 = Date.now();
    const e = await g.run('silent', req()).catch((err: EngineJobError) => err);
    expect((e as EngineJobError).code).toBe('ENGINE_START_FAILED');
    expect((e as EngineJobError).message).toContain('sent no ready within 1000 ms');
    expect((e as EngineJobError).message).toContain('loading model weights');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(2_000);
    expect(g.snapshot().processes).toEqual([]);
  });

  it('garbage before ready is a failed start', async () => {
    const g = governor([{ name: 'garbage', command: fixture('garbage', '--at-start=true') }], { startFailureLimit: 1 });
    const e = await g.run('garbage', req()).catch((err: EngineJobError) => err);
    expect((e as EngineJobError).code).toBe('ENGINE_START_FAILED');
    expect((e as EngineJobError).message).toContain('not the engine protocol');
  });

  it('a command that does not exist is a failed start', async () => {
    const g = governor([{ name: 'missing', command: ['/nonexistent/engine-binary'] }], { startFailureLimit: 1, enforcement: 'watchdog' });
    const e = await g.run('missing', req()).catch((err: EngineJobError) => err);
    expect((e as EngineJobError).code).toBe('ENGINE_START_FAILED');
    expect((e as EngineJobError).message).toMatch(/could not be started|ENOENT/);
  });
});
