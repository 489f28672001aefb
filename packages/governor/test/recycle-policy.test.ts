import { describe, expect, it } from 'vitest';
import { dueAfterJob, exitReason, isPlannedRecycle, recycleEvent } from '../src/index.js';

const GiB = 1024 ** 3;
const profile = { softLimitRatio: 0.75, memoryLimitBytes: 4 * GiB, gpuMemoryLimitBytes: 8 * GiB };
const after = (o: { jobsDone?: number; maxJobs?: number; rss?: number; gpu?: number }) => ({
  jobsDone: o.jobsDone ?? 1,
  maxJobs: o.maxJobs ?? 0,
  rssBytes: () => o.rss ?? GiB,
  gpuUsedBytes: () => o.gpu,
});

describe('recycle policy (between jobs)', () => {
  it('keeps a process under every limit', () => {
    expect(dueAfterJob(profile, after({ rss: 3 * GiB, gpu: 6 * GiB }))).toBeUndefined();
  });
  it('max-jobs first, then the RSS soft limit, then the GPU soft limit, each with its figures', () => {
    expect(dueAfterJob(profile, after({ jobsDone: 5, maxJobs: 5, rss: 4 * GiB }))).toEqual({
      reason: 'max-jobs',
      figures: { jobsDone: 5, maxJobs: 5 },
    });
    expect(dueAfterJob(profile, after({ rss: 3.5 * GiB, gpu: 7 * GiB }))).toEqual({
      reason: 'soft-limit',
      figures: { rssBytes: 3.5 * GiB, softLimitBytes: 3 * GiB, limitBytes: 4 * GiB },
    });
    expect(dueAfterJob(profile, after({ gpu: 7 * GiB }))).toEqual({
      reason: 'gpu-soft-limit',
      figures: { gpuUsedBytes: 7 * GiB, gpuSoftLimitBytes: 6 * GiB, gpuLimitBytes: 8 * GiB },
    });
    expect(dueAfterJob({ ...profile, gpuMemoryLimitBytes: undefined }, after({ gpu: 7 * GiB }))).toBeUndefined();
  });
  it('samples RSS only when the job count did not decide', () => {
    let sampled = 0;
    dueAfterJob(profile, { jobsDone: 2, maxJobs: 2, rssBytes: () => ++sampled, gpuUsedBytes: () => undefined });
    expect(sampled).toBe(0);
  });
});

describe('recycle reasons', () => {
  it('a ready process that went: our stop reason, else memory-limit or crash', () => {
    expect(exitReason('max-jobs', false)).toBe('max-jobs');
    expect(exitReason('timeout', false)).toBe('timeout');
    expect(exitReason(undefined, true)).toBe('memory-limit');
    expect(exitReason(undefined, false)).toBe('crash');
    expect(isPlannedRecycle('idle')).toBe(true);
    expect(isPlannedRecycle('crash')).toBe(false);
  });
});

describe('recycleEvent (the heartbeat view the worker publishes)', () => {
  it('carries the peak (else the triggering RSS), the limit, and how it ended', () => {
    expect(
      recycleEvent(
        {
          profile: 'classic',
          pid: 42,
          reason: 'memory-limit',
          figures: { peakBytes: 5 * GiB, limitBytes: 4 * GiB, exit: 'killed by SIGKILL', enforcedBy: 'watchdog', jobsDone: 3 },
        },
        1000,
      ),
    ).toEqual({
      at: 1000,
      profile: 'classic',
      pid: 42,
      reason: 'memory-limit',
      detail: 'killed by SIGKILL; enforced by watchdog',
      rssBytes: 5 * GiB,
      limitBytes: 4 * GiB,
    });
    expect(
      recycleEvent(
        {
          profile: 'c',
          pid: undefined,
          reason: 'soft-limit',
          figures: { rssBytes: 3.5 * GiB, softLimitBytes: 3 * GiB, limitBytes: 4 * GiB },
        },
        5,
      ),
    ).toEqual({ at: 5, profile: 'c', reason: 'soft-limit', rssBytes: 3.5 * GiB, limitBytes: 4 * GiB });
  });
});
