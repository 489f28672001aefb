import type { EngineOffer, EngineProcessState, ReadyMessage } from '@photoenhance/contracts';
import { engineFailure } from './child-failure.js';
import { EngineProcess, type EngineExit } from './engine-process.js';
import { canceledWhileWaiting, governorClosed, PendingJobs, PoolBase } from './pool-base.js';
import { dueAfterJob, isPlannedRecycle, type PlannedRecycleReason, type RecycleFigures } from './recycle-policy.js';
import { EngineJobError, type RunHooks, type RunRequest, type RunResult } from './types.js';

export type { PoolContext } from './pool-base.js';

interface Waiter {
  since: number;
  resolve(p: EngineProcess): void;
  reject(e: EngineJobError): void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

/**
 * The resident processes of one profile: up to poolSize, started on demand through the host-wide start queue,
 * handed to waiting jobs FIFO, recycled for memory, job count, idle time, timeouts and crashes.
 */
export class EnginePool extends PoolBase {
  readonly procs = new Set<EngineProcess>();
  private idle: EngineProcess[] = [];
  private waiters: Waiter[] = [];
  private starting = 0;
  private replacements = 0;
  private replacementSince = 0;
  private backoffTimer: NodeJS.Timeout | undefined;
  private ttlTimers = new Map<EngineProcess, NodeJS.Timeout>();
  private counted = new WeakSet<EngineProcess>();
  private lastReady: ReadyMessage | undefined;
  /** Dynamic batching: jobs waiting to go out together; one collector at a time takes a process and fills a batch. */
  private readonly pending = new PendingJobs(this.profile.name);
  private collecting = false;
  private morePending: (() => void) | undefined;

  /** Start-failure state: the limit of consecutive failed starts reached. */
  failing(): boolean {
    return this.failures >= this.ctx.startFailureLimit;
  }

  private readyCount(): number {
    let n = 0;
    for (const p of this.procs) if (p.state === 'idle' || p.state === 'busy') n++;
    return n;
  }

  demandSince(now: number): number | undefined {
    if (this.closed || now < this.backoffUntil || this.procs.size >= this.profile.poolSize) return undefined;
    const unmet = this.waiters.length - this.starting;
    if (unmet > 0) return this.waiters[this.starting]!.since;
    if (this.starting > 0) return undefined;
    if (this.replacements > 0) return this.replacementSince;
    if (this.prewarm && this.procs.size === 0) return now;
    // After a backoff, probe once even with no job waiting: success is what lifts ENGINE_START_FAILED holding.
    if (this.failing() && this.readyCount() === 0) return this.backoffUntil;
    return undefined;
  }

  async startOne(): Promise<{ pid: number | undefined; ok: boolean }> {
    const gpu = this.ctx.placeGpu?.(this.profile);
    const profile = gpu ? { ...this.profile, env: { ...this.profile.env, ...gpu.env } } : this.profile;
    const proc = new EngineProcess(
      profile,
      this.ctx.slotName(this.profile.name),
      this.ctx.plan(),
      this.ctx.logger.child({ profile: this.profile.name }),
    );
    gpu?.attach(() => proc.pid);
    this.procs.add(proc);
    this.starting++;
    proc.on('exit', (e: EngineExit) => {
      gpu?.release();
      this.onExit(proc, e);
    });
    try {
      const ready = await proc.start();
      this.lastReady = ready;
      this.ctx.logger.info(
        {
          profile: this.name,
          enginePid: proc.pid,
          startupMs: (proc.readyAt ?? 0) - proc.child.startedAt,
          engine: ready.engine,
          version: ready.version,
        },
        'engine ready',
      );
      const wasFailing = this.failing();
      this.failures = 0;
      this.backoffUntil = 0;
      if (this.replacements > 0) this.replacements--;
      this.prewarm = false;
      if (wasFailing) this.ctx.failingChanged();
      this.makeIdle(proc);
      return { pid: proc.pid, ok: true };
    } catch (e) {
      this.procs.delete(proc);
      gpu?.release();
      if (!this.closed) this.noteStartFailure(e as EngineJobError);
      return { pid: proc.pid, ok: false };
    } finally {
      this.starting--;
    }
  }

  private noteStartFailure(err: EngineJobError): void {
    this.failures++;
    this.lastFailure = err;
    this.ctx.logger.warn({ profile: this.name, failures: this.failures, err }, 'engine failed to start');
    if (!this.failing()) return;
    const delay = this.backoffMs();
    this.backoffUntil = Date.now() + delay;
    if (this.backoffTimer) clearTimeout(this.backoffTimer);
    this.backoffTimer = setTimeout(() => this.ctx.pump(), delay);
    this.backoffTimer.unref();
    this.replacements = 0;
    this.prewarm = false;
    if (this.readyCount() === 0) for (const w of this.waiters.splice(0)) this.rejectWaiter(w, this.startFailedError());
    this.ctx.failingChanged();
  }

  startFailedError(): EngineJobError {
    const last = this.lastFailure;
    return new EngineJobError(
      'ENGINE_START_FAILED',
      `engine ${this.name} failed to start ${this.failures} times in a row; next try in ${Math.max(0, Math.ceil((this.backoffUntil - Date.now()) / 1000))} s. Last: ${last?.message ?? 'unknown'}`,
      {
        retryable: true,
        details: { profile: this.name, failures: this.failures, backoffUntil: this.backoffUntil, ...(last?.details ?? {}) },
      },
    );
  }

  /**
   * Dynamic batching in force: the engine's ready declared batch.maxBatch ≥ 2 (capped by the profile's maxBatch); the
   * queue delay is the profile's maxQueueDelayMs, else the engine's, else 0 (send what is waiting).
   */
  batching(): { maxBatch: number; maxQueueDelayMs: number } | undefined {
    const declared = this.lastReady?.batch;
    if (!declared || typeof declared.maxBatch !== 'number' || !(declared.maxBatch >= 2)) return undefined;
    const maxBatch = Math.min(Math.floor(declared.maxBatch), this.profile.maxBatch ?? Infinity);
    if (maxBatch < 2) return undefined;
    const delay = this.profile.maxQueueDelayMs ?? declared.maxQueueDelayMs ?? 0;
    return { maxBatch, maxQueueDelayMs: Number.isFinite(delay) && delay > 0 ? delay : 0 };
  }

  async run(req: RunRequest, hooks: RunHooks = {}): Promise<RunResult> {
    if (this.batching()) return this.runBatched(req, hooks);
    const t0 = Date.now();
    let proc = await this.acquire(hooks.signal);
    // It may have died between being handed over and now (an idle crash): take the next one.
    while (proc.state !== 'idle') proc = await this.acquire(hooks.signal);
    const t1 = Date.now();
    try {
      const done = await proc.run(req, hooks);
      return {
        done,
        engine: { name: this.name, version: proc.ready?.version ?? 'unknown', pid: proc.pid },
        timings: { waitMs: t1 - t0, runMs: Date.now() - t1 },
      };
    } finally {
      this.release(proc);
    }
  }

  private runBatched(req: RunRequest, hooks: RunHooks): Promise<RunResult> {
    const refused = this.refusal(hooks);
    if (refused) return Promise.reject(refused);
    return this.pending.add(req, hooks, () => {
      this.morePending?.();
      this.collect();
    });
  }

  private collect(): void {
    if (this.collecting || this.pending.length === 0 || this.closed) return;
    this.collecting = true;
    void this.dispatchBatch().finally(() => {
      this.collecting = false;
      this.collect();
    });
  }

  /** Take a process, wait (at most the queue delay, counted from the oldest waiting job) for a full batch, send it. */
  private async dispatchBatch(): Promise<void> {
    let proc: EngineProcess;
    try {
      proc = await this.acquire();
      while (proc.state !== 'idle') proc = await this.acquire();
    } catch (err) {
      this.pending.rejectAll(err);
      return;
    }
    const free = Date.now();
    // Jobs freed by the batch that just ended arrive within this turn: let them join before the batch is cut.
    await new Promise<void>((resolve) => setImmediate(resolve));
    const b = this.batching() ?? { maxBatch: 1, maxQueueDelayMs: 0 };
    const deadline = (this.pending.oldestSince ?? 0) + b.maxQueueDelayMs;
    // Bounded: every pass ends at the deadline or with a new job; the deadline is fixed.
    while (this.pending.length > 0 && this.pending.length < b.maxBatch && Date.now() < deadline && !this.closed) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.max(0, deadline - Date.now()));
        this.morePending = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.morePending = undefined;
    }
    const batch = this.pending.take(b.maxBatch);
    if (batch.length === 0 || this.closed || proc.state !== 'idle') {
      for (const p of batch) p.reject(governorClosed(this.name));
      this.release(proc);
      return;
    }
    const t1 = Date.now();
    const engine = { name: this.name, version: proc.ready?.version ?? 'unknown', pid: proc.pid };
    let left = batch.length;
    const answered = (): void => {
      if (--left === 0) this.release(proc);
    };
    proc.runBatch(batch.map((p) => ({ req: p.req, hooks: p.hooks }))).forEach((promise, i) => {
      const p = batch[i]!;
      promise.then(
        (done) => {
          answered();
          p.resolve({ done, engine, timings: { waitMs: t1 - p.since, runMs: Date.now() - t1, batchWaitMs: t1 - Math.max(free, p.since) } });
        },
        (err: unknown) => {
          answered();
          p.reject(err);
        },
      );
    });
  }

  private acquire(signal?: AbortSignal): Promise<EngineProcess> {
    const refused = this.refusal({ signal });
    if (refused) return Promise.reject(refused);
    const proc = this.takeIdle();
    if (proc) return Promise.resolve(proc);
    if (this.failing() && this.readyCount() === 0) return Promise.reject(this.startFailedError());
    return new Promise<EngineProcess>((resolve, reject) => {
      const w: Waiter = { since: Date.now(), resolve, reject };
      if (signal) {
        w.signal = signal;
        w.onAbort = () => {
          const i = this.waiters.indexOf(w);
          if (i >= 0) this.waiters.splice(i, 1);
          reject(canceledWhileWaiting(this.name));
        };
        signal.addEventListener('abort', w.onAbort, { once: true });
      }
      this.waiters.push(w);
      this.ctx.pump();
    });
  }

  private rejectWaiter(w: Waiter, e: EngineJobError): void {
    if (w.onAbort) w.signal?.removeEventListener('abort', w.onAbort);
    w.reject(e);
  }

  private takeIdle(): EngineProcess | undefined {
    // Most recently used first, so that surplus processes stay idle long enough to reach their idle TTL.
    while (this.idle.length) {
      const p = this.idle.pop()!;
      this.clearTtl(p);
      if (p.state === 'idle') return p;
    }
    return undefined;
  }

  /** After a job: recycle if due, else hand to the next waiter or park idle. */
  private release(proc: EngineProcess): void {
    if (proc.state !== 'idle') return; // stopping or gone: the exit handler replaces it
    const due = dueAfterJob(this.profile, {
      jobsDone: proc.jobsDone,
      maxJobs: proc.maxJobs,
      rssBytes: () => proc.child.sampleNow({ cachedTree: true }),
      gpuUsedBytes: () => this.ctx.gpuUsedBy?.(proc.pid),
    });
    if (due) {
      this.recycle(proc, due.reason, true, due.figures);
      return;
    }
    this.makeIdle(proc);
  }

  /**
   * Hard GPU memory limit, after each GPU sample: a ready process whose tree holds more than gpuMemoryLimitBytes is
   * killed (mid-job: its job fails ENGINE_GPU_MEMORY_LIMIT) and replaced. Soft mode leaves it to the between-jobs check.
   */
  enforceGpuLimit(): void {
    const limit = this.profile.gpuMemoryLimitBytes;
    if (!limit || this.profile.gpuMemoryLimitMode === 'soft' || this.closed) return;
    for (const proc of this.procs) {
      if (proc.state !== 'idle' && proc.state !== 'busy') continue;
      const g = this.ctx.processGpu?.(proc.pid);
      if (g && g.usedBytes > limit) proc.killForGpuLimit(g.usedBytes, limit, g.index);
    }
  }

  private makeIdle(proc: EngineProcess): void {
    if (proc.state !== 'idle' || this.closed) return;
    const w = this.waiters.shift();
    if (w) {
      if (w.onAbort) w.signal?.removeEventListener('abort', w.onAbort);
      w.resolve(proc);
      return;
    }
    this.idle.push(proc);
    if (this.profile.idleTtlMs > 0) {
      const t = setTimeout(() => {
        this.ttlTimers.delete(proc);
        const i = this.idle.indexOf(proc);
        if (i < 0 || proc.state !== 'idle') return;
        this.idle.splice(i, 1);
        this.recycle(proc, 'idle', false, { idleMs: Date.now() - proc.idleSince, idleTtlMs: this.profile.idleTtlMs });
      }, this.profile.idleTtlMs);
      t.unref();
      this.ttlTimers.set(proc, t);
    }
  }

  private clearTtl(proc: EngineProcess): void {
    const t = this.ttlTimers.get(proc);
    if (t) clearTimeout(t);
    this.ttlTimers.delete(proc);
  }

  private recycle(proc: EngineProcess, reason: PlannedRecycleReason, replace: boolean, figures: RecycleFigures): void {
    this.clearTtl(proc);
    const i = this.idle.indexOf(proc);
    if (i >= 0) this.idle.splice(i, 1);
    this.counted.add(proc);
    this.ctx.recycled(this.name, proc.pid, reason, { jobsDone: proc.jobsDone, peakBytes: proc.child.peakBytes, ...figures });
    if (replace) this.wantReplacement();
    void proc.stop(reason, true);
  }

  private wantReplacement(): void {
    if (this.replacements === 0) this.replacementSince = Date.now();
    this.replacements = Math.min(this.replacements + 1, this.profile.poolSize);
  }

  private onExit(proc: EngineProcess, e: EngineExit): void {
    this.procs.delete(proc);
    this.clearTtl(proc);
    const i = this.idle.indexOf(proc);
    if (i >= 0) this.idle.splice(i, 1);
    if (!e.wasReady || this.closed) return; // start failures are handled by startOne
    // Recycles we decided were counted when decided; the rest are counted here, when the process is found gone.
    if (!this.counted.has(proc) && !isPlannedRecycle(e.reason)) {
      this.ctx.recycled(this.name, proc.pid, e.reason, {
        exit: e.exit.words,
        peakBytes: e.exit.peakBytes,
        jobsDone: proc.jobsDone,
        ...(e.exit.memoryLimit ? { limitBytes: e.exit.memoryLimit.limitBytes, enforcedBy: e.exit.memoryLimit.by } : {}),
        ...(proc.gpuLimitHit ? { gpuUsedBytes: proc.gpuLimitHit.usedBytes, gpuLimitBytes: proc.gpuLimitHit.limitBytes } : {}),
      });
      if (e.reason === 'crash' && proc.jobsDone === 0) {
        // Died on its own before doing any work: as good as a failed start, so it counts toward the backoff.
        this.noteStartFailure(
          engineFailure('ENGINE_START_FAILED', {
            profile: this.name,
            pid: proc.pid,
            what: `${e.exit.words} while idle, before its first job`,
            stderrTail: proc.child.stderrTail(),
          }),
        );
      } else this.wantReplacement();
    }
    this.ctx.pump();
  }

  offer(): EngineOffer {
    const r = this.lastReady;
    return {
      name: this.name,
      kind: this.profile.kind,
      poolSize: this.profile.poolSize,
      ...(r
        ? {
            version: r.version,
            capabilities: { options: r.capabilities.options, scales: r.capabilities.scales, formats: r.capabilities.formats },
          }
        : {}),
      memoryLimitBytes: this.profile.memoryLimitBytes,
      expectedMemoryBytes: this.profile.expectedMemoryBytes,
    };
  }

  states(now = Date.now()): EngineProcessState[] {
    return [...this.procs].map((p) => ({
      profile: this.name,
      pid: p.pid,
      state: p.state === 'exited' ? 'stopping' : p.state,
      rssBytes: p.child.rssBytes,
      limitBytes: this.profile.memoryLimitBytes,
      peakBytes: p.child.peakBytes,
      jobsDone: p.jobsDone,
      startedAt: p.child.startedAt,
      uptimeMs: now - p.child.startedAt,
      enforcement: p.child.enforcement,
    }));
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.backoffTimer) clearTimeout(this.backoffTimer);
    for (const t of this.ttlTimers.values()) clearTimeout(t);
    this.ttlTimers.clear();
    for (const w of this.waiters.splice(0)) this.rejectWaiter(w, governorClosed(this.name));
    this.pending.rejectAll(governorClosed(this.name));
    this.morePending?.();
    await Promise.all([...this.procs].map((p) => p.stop('shutdown', p.state === 'idle')));
  }
}
