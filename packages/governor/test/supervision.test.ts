import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { EngineJobError } from '../src/index.js';
import { fixture, governor, req, waitFor, alive } from './helpers.js';

const rejection = async (p: Promise<unknown>): Promise<EngineJobError> => {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(EngineJobError);
    return e as EngineJobError;
  }
  throw new Error('expected a rejection');
};

describe('resident engine supervision', () => {
  it('runs jobs with progress and stderr logs, reusing one process', async () => {
    const g = governor([{ name: 'normal', command: fixture('normal', '--ms=40') }]);
    const progress: number[] = [];
    const logs: string[] = [];
    const r1 = await g.run('normal', req(), { onProgress: (p) => progress.push(p), onLog: (l) => logs.push(l) });
    const r2 = await g.run('normal', req());
    expect(r1.done.type).toBe('done');
    expect(r1.engine.pid).toBe(r2.engine.pid);
    expect(r1.engine.version).toBe('0.0.1');
    expect(progress).toEqual([0.5]);
    expect(logs.some((l) => l.startsWith('working on job-'))).toBe(true);
    const snap = g.snapshot();
    expect(snap.processes).toHaveLength(1);
    expect(snap.processes[0]).toMatchObject({ profile: 'normal', state: 'idle', jobsDone: 2 });
    expect(snap.engines[0]).toMatchObject({ name: 'normal', version: '0.0.1', capabilities: { scales: [1, 2, 4] } });
  });

  it('passes the profile env through and applies maxOpenFiles (prlimit)', async () => {
    const g = governor([{ name: 'normal', command: fixture('normal'), env: { OMP_NUM_THREADS: '3' }, maxOpenFiles: 321 }]);
    const r = await g.run('normal', req());
    expect(r.done.meta).toMatchObject({ omp: '3' });
    // Without a prlimit binary the limit is skipped (and logged), not faked.
    if (existsSync('/usr/bin/prlimit') || existsSync('/bin/prlimit')) expect(r.done.meta).toMatchObject({ nofile: 321 });
  });

  it('maps an engine error: catalogue code kept, retryable respected', async () => {
    const g = governor([
      { name: 'normal', command: fixture('normal', '--code=IMAGE_UNREADABLE') },
      { name: 'odd', command: fixture('normal', '--code=WEIRD', '--retryable=true') },
    ]);
    const e1 = await rejection(g.run('normal', req('/tmp/engine-error.png')));
    expect(e1.code).toBe('IMAGE_UNREADABLE');
    expect(e1.retryable).toBe(false);
    const e2 = await rejection(g.run('odd', req('/tmp/engine-error.png')));
    expect(e2.code).toBe('ENGINE_FAILED');
    expect(e2.retryable).toBe(true);
    expect(e2.message).toContain('WEIRD');
    // The process survives a reported error.
    await expect(g.run('normal', req())).resolves.toMatchObject({ done: { type: 'done' } });
  });

  it('crash mid-job → ENGINE_CRASHED with the exit code in words and the stderr tail; replaced', async () => {
    const g = governor([{ name: 'crash', command: fixture('crash', '--code=3') }]);
    const e = await rejection(g.run('crash', req()));
    expect(e.code).toBe('ENGINE_CRASHED');
    expect(e.message).toMatch(/exited with code 3 mid-job/);
    expect(e.message).toContain('segmentation fault (pretend)');
    expect(e.retryable).toBe(true);
    await waitFor(() => g.snapshot().processes.some((p) => p.state === 'idle'), 10_000, 'a replacement');
    expect(g.snapshot().recycles.crash).toBe(1);
  });

  it('killed by a signal mid-job → ENGINE_CRASHED "killed by SIGKILL (signal 9)"', async () => {
    const g = governor([{ name: 'crash', command: fixture('crash', '--signal=SIGKILL') }]);
    const e = await rejection(g.run('crash', req()));
    expect(e.code).toBe('ENGINE_CRASHED');
    expect(e.message).toContain('killed by SIGKILL (signal 9)');
  });

  it('job timeout → ENGINE_TIMEOUT; the process is killed and replaced', async () => {
    const g = governor([{ name: 'hang', command: fixture('hang'), jobTimeoutMs: 300 }]);
    const r = g.run('hang', req());
    const pid = await waitFor(() => g.snapshot().processes.find((p) => p.state === 'busy')?.pid, 10_000, 'busy');
    const e = await rejection(r);
    expect(e.code).toBe('ENGINE_TIMEOUT');
    expect(e.message).toContain('300 ms');
    expect(alive(pid)).toBe(false);
    expect(g.snapshot().recycles.timeout).toBe(1);
    await waitFor(() => g.snapshot().processes.some((p) => p.state === 'idle' && p.pid !== pid), 10_000, 'a replacement');
  });

  it('cancel, cooperative engine → JOB_CANCELED and the process stays', async () => {
    const g = governor([{ name: 'normal', command: fixture('normal', '--ms=5000') }]);
    const ac = new AbortController();
    const r = g.run('normal', req(), { signal: ac.signal });
    const pid = await waitFor(() => g.snapshot().processes.find((p) => p.state === 'busy')?.pid, 10_000, 'busy');
    ac.abort();
    const e = await rejection(r);
    expect(e.code).toBe('JOB_CANCELED');
    expect(e.retryable).toBe(false);
    expect(e.message).toContain('canceled job');
    expect(g.snapshot().processes).toMatchObject([{ pid, state: 'idle' }]);
  });

  it('cancel, engine ignoring it (and SIGTERM) → killed by the ladder, JOB_CANCELED, replaced', async () => {
    const g = governor([{ name: 'stubborn', command: fixture('ignore-term'), stopGraceMs: 200 }]);
    const ac = new AbortController();
    const r = g.run('stubborn', req(), { signal: ac.signal });
    const pid = await waitFor(() => g.snapshot().processes.find((p) => p.state === 'busy')?.pid, 10_000, 'busy');
    const t0 = Date.now();
    ac.abort();
    const e = await rejection(r);
    expect(e.code).toBe('JOB_CANCELED');
    expect(e.message).toMatch(/did not stop .* within 200 ms of cancel; killed/);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(390); // cancel grace + SIGTERM grace
    expect(alive(pid)).toBe(false);
  });

  it('cancel while waiting for an engine rejects at once', async () => {
    const g = governor([{ name: 'normal', command: fixture('normal', '--ms=300') }]);
    const busy = g.run('normal', req());
    const ac = new AbortController();
    const waiting = g.run('normal', req(), { signal: ac.signal });
    await waitFor(() => g.snapshot().processes.some((p) => p.state === 'busy'), 10_000, 'busy');
    ac.abort();
    expect((await rejection(waiting)).code).toBe('JOB_CANCELED');
    await busy;
  });

  it('garbage on stdout → ENGINE_PROTOCOL_ERROR; replaced', async () => {
    const g = governor([{ name: 'garbage', command: fixture('garbage') }]);
    const e = await rejection(g.run('garbage', req()));
    expect(e.code).toBe('ENGINE_PROTOCOL_ERROR');
    expect(e.message).toContain('not JSON');
    expect(g.snapshot().recycles.protocol).toBe(1);
  });

  it('unknown profile is not retryable; close() is idempotent and later runs fail', async () => {
    const g = governor([{ name: 'normal', command: fixture('normal') }]);
    const e = await rejection(g.run('nope', req()));
    expect(e.retryable).toBe(false);
    await g.run('normal', req());
    const pid = g.snapshot().processes[0]!.pid;
    await Promise.all([g.close(), g.close()]);
    expect(alive(pid)).toBe(false);
    expect((await rejection(g.run('normal', req()))).code).toBe('ENGINE_FAILED');
  });

  it('close() while a job runs fails it (retryable) and leaves nothing behind', async () => {
    const g = governor([{ name: 'stubborn', command: fixture('ignore-term'), stopGraceMs: 200 }]);
    const r = g.run('stubborn', req());
    const pid = await waitFor(() => g.snapshot().processes.find((p) => p.state === 'busy')?.pid, 10_000, 'busy');
    await g.close();
    const e = await rejection(r);
    expect(e.retryable).toBe(true);
    expect(alive(pid)).toBe(false);
  });
});
