import type { Logger } from 'pino';
import type { EnforcementPlan } from './enforcement.js';
import type { GpuPlacement } from './gpu-governance.js';
import type { RecycleFigures, RecycleReason } from './recycle-policy.js';
import type { SpawnClient } from './start-queue.js';
import { EngineJobError, type EngineProfile, type RunHooks, type RunRequest, type RunResult } from './types.js';

/** What a pool needs from the governor. */
export interface PoolContext {
  plan(): EnforcementPlan;
  logger: Logger;
  startFailureLimit: number;
  backoff: { baseMs: number; maxMs: number };
  slotName(profile: string): string;
  pump(): void;
  recycled(profile: string, pid: number | undefined, reason: RecycleReason, figures: RecycleFigures): void;
  /** A profile entered or left the start-failed state: admission must be re-decided. */
  failingChanged(): void;
  /** GPU hosts: where a new process of this profile goes (CUDA_VISIBLE_DEVICES); undefined = not pinned. */
  placeGpu?(profile: EngineProfile): GpuPlacement | undefined;
  /** GPU hosts: GPU bytes this process tree held at the last sample (undefined: not pinned / unknown). */
  gpuUsedBy?(pid: number | undefined): number | undefined;
  /** GPU hosts: the GPU a process is pinned to and what its tree holds there at the last sample. */
  processGpu?(pid: number | undefined): { index: number; usedBytes: number } | undefined;
}

export const canceledWhileWaiting = (profile: string): EngineJobError =>
  new EngineJobError('JOB_CANCELED', `job canceled while waiting for engine ${profile}`, { retryable: false, details: { profile } });

export const governorClosed = (profile: string): EngineJobError =>
  new EngineJobError('ENGINE_FAILED', `engine ${profile} is not available: the governor is closing`, {
    retryable: true,
    details: { profile },
  });

/** A job waiting for its turn in a pool. */
export interface PendingJob {
  req: RunRequest;
  hooks: RunHooks;
  since: number;
  resolve(r: RunResult): void;
  reject(e: unknown): void;
  onAbort?: () => void;
}

/**
 * Jobs waiting in a pool, oldest first. A job canceled while it waits leaves at once (JOB_CANCELED); once taken, its
 * abort signal is the run's business.
 */
export class PendingJobs {
  private readonly jobs: PendingJob[] = [];

  constructor(private readonly profile: string) {}

  get length(): number {
    return this.jobs.length;
  }

  /** When the oldest waiting job arrived. */
  get oldestSince(): number | undefined {
    return this.jobs[0]?.since;
  }

  /** Queue a job; `added` runs once it is in the queue (to start a process or wake a collector). */
  add(req: RunRequest, hooks: RunHooks, added: () => void): Promise<RunResult> {
    return new Promise<RunResult>((resolve, reject) => {
      const p: PendingJob = { since: Date.now(), req, hooks, resolve, reject };
      if (hooks.signal) {
        p.onAbort = () => {
          const i = this.jobs.indexOf(p);
          if (i < 0) return; // already taken: the run's own abort handling acts
          this.jobs.splice(i, 1);
          reject(canceledWhileWaiting(this.profile));
        };
        hooks.signal.addEventListener('abort', p.onAbort, { once: true });
      }
      this.jobs.push(p);
      added();
    });
  }

  /** Take up to `n` jobs, oldest first. */
  take(n: number): PendingJob[] {
    const taken = this.jobs.splice(0, n);
    for (const p of taken) if (p.onAbort) p.hooks.signal?.removeEventListener('abort', p.onAbort);
    return taken;
  }

  rejectAll(err: unknown): void {
    for (const p of this.take(this.jobs.length)) p.reject(err);
  }
}

/**
 * What both kinds of pool share: the profile, the start-failure count and its backoff, and the answers to a job that
 * cannot wait (governor closing, already canceled).
 */
export abstract class PoolBase implements SpawnClient {
  prewarm = false;
  /** Consecutive failed starts. */
  failures = 0;
  lastFailure: EngineJobError | undefined;
  /** No start before this time (epoch ms) once failures reach the limit. */
  backoffUntil = 0;
  protected closed = false;

  constructor(
    readonly profile: EngineProfile,
    protected readonly ctx: PoolContext,
  ) {}

  get name(): string {
    return this.profile.name;
  }

  get expectedMemoryBytes(): number {
    return this.profile.expectedMemoryBytes;
  }

  abstract demandSince(now: number): number | undefined;
  abstract startOne(): Promise<{ pid: number | undefined; ok: boolean }>;

  /** The answer to a job that cannot even wait: the pool is closing, or the job was canceled before it came. */
  protected refusal(hooks: RunHooks): EngineJobError | undefined {
    if (this.closed) return governorClosed(this.name);
    if (hooks.signal?.aborted) return canceledWhileWaiting(this.name);
    return undefined;
  }

  /** The pause after the latest failed start, once failures reached the limit: doubling from base, capped at max. */
  protected backoffMs(): number {
    const { baseMs, maxMs } = this.ctx.backoff;
    return Math.min(baseMs * 2 ** (this.failures - this.ctx.startFailureLimit), maxMs);
  }
}
