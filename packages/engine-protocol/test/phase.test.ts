import { describe, expect, it } from 'vitest';
import { jobRefusal, type Phase, type RunningJob, runningJob } from '../src/phase.js';

const job: RunningJob = { id: 'j1', output: '/tmp/j1.png', controller: new AbortController(), canceled: false };

describe('engine phases', () => {
  it('takes a job only when idle, and says why not otherwise', () => {
    const cases: Array<[Phase, string | undefined]> = [
      [{ is: 'starting' }, 'not ready yet; wait for "ready"'],
      [{ is: 'idle' }, undefined],
      [{ is: 'busy', job, draining: false }, 'busy with job j1; send one job at a time'],
      [{ is: 'busy', job, draining: true }, 'shutting down'],
      [{ is: 'closing' }, 'shutting down'],
      [{ is: 'exiting' }, 'shutting down'],
    ];
    for (const [phase, why] of cases) expect(jobRefusal(phase), phase.is).toBe(why);
  });

  it('has a running job only while busy', () => {
    expect(runningJob({ is: 'busy', job, draining: true })).toBe(job);
    expect(runningJob({ is: 'idle' })).toBeUndefined();
    expect(runningJob({ is: 'closing' })).toBeUndefined();
  });
});
