import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import {
  encodeMessage,
  parseEngineMessage,
  type DoneMessage,
  type EngineProcessStatus,
  type EngineToWorker,
  type ReadyMessage,
} from '@photoenhance/contracts';
import { catalogueCode, engineFailure, formatBytes } from './child-failure.js';
import { exitReason, type RecycleReason } from './recycle-policy.js';
import type { EnforcementPlan } from './enforcement.js';
import { SupervisedChild, type ChildExit, type MemoryLimitHit } from './supervised-child.js';
import type { EngineJobError, EngineProfile, RunHooks, RunRequest } from './types.js';

/** Memory kills get a short grace: the tree keeps growing while it is asked nicely. */
export const MEMORY_GRACE_MS = 300;

interface ActiveJob {
  id: string;
  hooks: RunHooks;
  resolve(d: DoneMessage): void;
  reject(e: EngineJobError): void;
  timer: NodeJS.Timeout;
  cancelTimer?: NodeJS.Timeout;
  canceling: boolean;
  /** The error to report once the process is gone, when we are the ones killing it. */
  killError?: EngineJobError;
  onAbort?: () => void;
}

export interface EngineExit {
  exit: ChildExit;
  /** Why it went: our stop reason, "memory-limit", or "crash" when it left on its own. */
  reason: RecycleReason;
  wasReady: boolean;
}

/** The ENGINE_MEMORY_LIMIT error, worded the same for every mode. */
export function memoryLimitError(profile: string, pid: number | undefined, hit: MemoryLimitHit, stderrTail?: string): EngineJobError {
  const by = hit.by === 'watchdog' ? 'watchdog SIGTERM/SIGKILL' : `${hit.by} OOM kill`;
  return engineFailure('ENGINE_MEMORY_LIMIT', {
    profile,
    pid,
    what: `passed its memory limit ${formatBytes(hit.limitBytes)} (peak ${formatBytes(hit.peakBytes)}, enforced by ${by})`,
    ...(stderrTail ? { stderrTail } : {}),
    details: { limitBytes: hit.limitBytes, peakBytes: hit.peakBytes, enforcedBy: hit.by, ...(hit.kernel ? { kernel: hit.kernel } : {}) },
  });
}

/**
 * One resident engine process speaking the engine protocol: handshake, one job at a time, cancel, timeout, and an
 * exit that always settles the job in flight. A process that fails to start is discarded, never given a job.
 * Events: 'exit' (EngineExit).
 */
export class EngineProcess extends EventEmitter {
  readonly child: SupervisedChild;
  state: EngineProcessStatus | 'exited' = 'starting';
  ready: ReadyMessage | undefined;
  readyAt: number | undefined;
  jobsDone = 0;
  idleSince = Date.now();
  /** maxJobs with this process's jitter drawn once (gunicorn-style), so a pool does not recycle all at once. */
  readonly maxJobs: number;
  /** Set when the hard GPU memory limit killed it: the figures, for the recycle record. */
  gpuLimitHit: { usedBytes: number; limitBytes: number; gpu: number } | undefined;
  /** Jobs in flight: one, or a batch (engines whose ready declared batch.maxBatch ≥ 2). */
  private readonly jobs = new Map<string, ActiveJob>();

  constructor(
    readonly profile: EngineProfile,
    slotName: string,
    plan: EnforcementPlan,
    private readonly logger: Logger,
  ) {
    super();
    const jitter = profile.maxJobsJitter ? Math.round((Math.random() * 2 - 1) * profile.maxJobsJitter) : 0;
    this.maxJobs = profile.maxJobs > 0 ? Math.max(1, profile.maxJobs + jitter) : 0;
    this.child = new SupervisedChild({
      label: profile.name,
      slotName,
      argv: profile.command,
      env: profile.env,
      ...(profile.cwd ? { cwd: profile.cwd } : {}),
      limitBytes: profile.memoryLimitBytes,
      ...(profile.cpuQuota ? { cpuQuota: profile.cpuQuota } : {}),
      ...(profile.maxOpenFiles ? { maxOpenFiles: profile.maxOpenFiles } : {}),
      plan,
      memoryGraceMs: Math.min(MEMORY_GRACE_MS, profile.stopGraceMs),
      logger,
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Spawn and wait for `ready`. Rejects (after the process is gone) with ENGINE_START_FAILED. */
  start(): Promise<ReadyMessage> {
    const p = this.profile;
    return new Promise<ReadyMessage>((resolve, reject) => {
      const timer = setTimeout(() => fail(`sent no ready within ${p.startupTimeoutMs} ms`, 'startup-timeout'), p.startupTimeoutMs);
      let failing = false;
      const fail = (what: string, reason: string): void => {
        if (failing) return;
        failing = true;
        clearTimeout(timer);
        void this.child.terminate(reason, p.stopGraceMs).then(() => {
          reject(engineFailure('ENGINE_START_FAILED', { profile: p.name, pid: this.pid, what, stderrTail: this.child.stderrTail() }));
        });
      };
      this.once('ready', (msg: ReadyMessage) => {
        clearTimeout(timer);
        if (!failing) resolve(msg);
      });
      this.child.on('stdout', (line: string) => this.onLine(line, fail));
      this.child.on('stderr', (line: string) => {
        this.logger.debug({ enginePid: this.pid, stderr: line }, 'engine stderr');
        for (const j of this.jobs.values()) j.hooks.onLog?.(line);
      });
      this.child.once('exit', (exit: ChildExit) => {
        clearTimeout(timer);
        const wasReady = this.ready !== undefined;
        this.state = 'exited';
        if (!wasReady && !failing) {
          failing = true;
          const what = exit.memoryLimit
            ? `passed its memory limit ${formatBytes(exit.memoryLimit.limitBytes)} during start-up (peak ${formatBytes(exit.memoryLimit.peakBytes)})`
            : `${exit.words} before it was ready`;
          reject(engineFailure('ENGINE_START_FAILED', { profile: p.name, pid: this.pid, what, stderrTail: this.child.stderrTail() }));
        }
        this.settleOnExit(exit);
        this.emit('exit', { exit, reason: exitReason(exit.stopReason, exit.memoryLimit !== undefined), wasReady } satisfies EngineExit);
      });
      this.child.spawn();
    });
  }

  /** Run one job. The promise settles only once the engine is done with it (answered, or is gone). */
  run(req: RunRequest, hooks: RunHooks = {}): Promise<DoneMessage> {
    return this.runBatch([{ req, hooks }])[0]!;
  }

  /**
   * Run several jobs in one `batch` request (one job: a plain `job` message, as every engine understands). Each
   * promise settles on its own job's answer; the process is idle again when all are answered.
   */
  runBatch(items: Array<{ req: RunRequest; hooks?: RunHooks }>): Array<Promise<DoneMessage>> {
    if (this.state !== 'idle') throw new Error(`engine ${this.profile.name} (pid ${this.pid}) is ${this.state}, not idle`);
    if (items.length === 0) return [];
    this.state = 'busy';
    const promises = items.map(
      ({ req, hooks = {} }) =>
        new Promise<DoneMessage>((resolve, reject) => {
          const job: ActiveJob = {
            id: req.id,
            hooks,
            resolve,
            reject,
            canceling: false,
            timer: setTimeout(() => {
              const err = engineFailure('ENGINE_TIMEOUT', {
                profile: this.profile.name,
                pid: this.pid,
                what: `ran past its job timeout of ${this.profile.jobTimeoutMs} ms on job ${req.id}`,
              });
              this.killFor('timeout', err, this.profile.stopGraceMs, job);
            }, this.profile.jobTimeoutMs),
          };
          this.jobs.set(req.id, job);
          if (hooks.signal) {
            job.onAbort = () => this.cancel(job);
            if (hooks.signal.aborted) queueMicrotask(job.onAbort);
            else hooks.signal.addEventListener('abort', job.onAbort, { once: true });
          }
        }),
    );
    const wire = items.map(({ req }) => ({ id: req.id, input: req.input, output: req.output, options: req.options }));
    this.child.send(encodeMessage(wire.length === 1 ? { type: 'job', ...wire[0]! } : { type: 'batch', jobs: wire }));
    return promises;
  }

  /** Stop this process. graceful: shutdown message + EOF first. A job in flight fails (retryable). */
  stop(reason: string, graceful: boolean): Promise<ChildExit> {
    if (this.state !== 'exited') this.state = 'stopping';
    for (const job of this.jobs.values()) {
      job.killError ??= engineFailure('ENGINE_FAILED', {
        profile: this.profile.name,
        pid: this.pid,
        what: `was stopped (${reason}) while running job ${job.id}`,
      });
    }
    return graceful
      ? this.child.shutdown(reason, this.profile.stopGraceMs, encodeMessage({ type: 'shutdown' }))
      : this.child.terminate(reason, this.profile.stopGraceMs);
  }

  /**
   * Hard GPU memory limit: its process tree holds more GPU memory than gpuMemoryLimitBytes (per nvidia-smi). The driver
   * has no per-process cap, so the governor kills it (short grace, as for host memory); jobs in flight fail with
   * ENGINE_GPU_MEMORY_LIMIT.
   */
  killForGpuLimit(usedBytes: number, limitBytes: number, gpu: number): void {
    if (this.gpuLimitHit || this.state === 'exited' || this.state === 'stopping' || this.state === 'starting') return;
    this.gpuLimitHit = { usedBytes, limitBytes, gpu };
    const what = `held ${formatBytes(usedBytes)} of GPU memory on GPU ${gpu}, over its GPU memory limit ${formatBytes(limitBytes)} (gpuMemoryLimitBytes, hard); killed`;
    this.logger.warn(
      { enginePid: this.pid, gpu, gpuUsedBytes: usedBytes, gpuLimitBytes: limitBytes },
      `engine ${this.profile.name} (pid ${this.pid}) ${what}`,
    );
    const err = engineFailure('ENGINE_GPU_MEMORY_LIMIT', {
      profile: this.profile.name,
      pid: this.pid,
      what: this.jobs.size ? `${what} mid-job (job ${[...this.jobs.keys()].join(', ')})` : what,
      details: { gpu, gpuUsedBytes: usedBytes, gpuLimitBytes: limitBytes },
    });
    this.killFor('gpu-memory-limit', err, Math.min(MEMORY_GRACE_MS, this.profile.stopGraceMs));
  }

  private canceledError(what: string): EngineJobError {
    return engineFailure('JOB_CANCELED', { profile: this.profile.name, pid: this.pid, what, retryable: false });
  }

  private cancel(job: ActiveJob): void {
    if (job.canceling || this.jobs.get(job.id) !== job) return;
    job.canceling = true;
    this.child.send(encodeMessage({ type: 'cancel', id: job.id }));
    job.cancelTimer = setTimeout(() => {
      this.killFor(
        'cancel',
        this.canceledError(`did not stop job ${job.id} within ${this.profile.stopGraceMs} ms of cancel; killed`),
        this.profile.stopGraceMs,
        job,
      );
    }, this.profile.stopGraceMs);
  }

  /** We kill the process; `only`'s job (default: every job in flight) settles with `err` once it is gone, the others of
   * its batch as stopped (retryable). */
  private killFor(reason: string, err: EngineJobError, graceMs: number, only?: ActiveJob): void {
    for (const job of this.jobs.values()) {
      job.killError ??=
        only && job !== only
          ? engineFailure('ENGINE_FAILED', {
              profile: this.profile.name,
              pid: this.pid,
              what: `was stopped (${reason} of job ${only.id} in the same batch) while running job ${job.id}`,
            })
          : err;
    }
    if (this.state !== 'exited') this.state = 'stopping';
    void this.child.terminate(reason, graceMs);
  }

  private settle(job: ActiveJob, outcome: { done: DoneMessage } | { error: EngineJobError }): void {
    if (this.jobs.get(job.id) !== job) return;
    this.jobs.delete(job.id);
    clearTimeout(job.timer);
    if (job.cancelTimer) clearTimeout(job.cancelTimer);
    if (job.onAbort) job.hooks.signal?.removeEventListener('abort', job.onAbort);
    if (this.state === 'busy' && this.jobs.size === 0) {
      this.state = 'idle';
      this.idleSince = Date.now();
    }
    this.jobsDone++;
    if ('done' in outcome) job.resolve(outcome.done);
    else job.reject(outcome.error);
  }

  private settleOnExit(exit: ChildExit): void {
    for (const job of [...this.jobs.values()]) this.settleJobOnExit(job, exit);
  }

  private settleJobOnExit(job: ActiveJob, exit: ChildExit): void {
    const p = this.profile;
    let err: EngineJobError;
    if (job.canceling && job.killError?.code === 'JOB_CANCELED') err = job.killError;
    else if (exit.memoryLimit) err = memoryLimitError(p.name, this.pid, exit.memoryLimit, this.child.stderrTail());
    else if (job.killError) err = job.killError;
    else {
      err = engineFailure('ENGINE_CRASHED', {
        profile: p.name,
        pid: this.pid,
        what: `${exit.words} mid-job (job ${job.id})`,
        stderrTail: this.child.stderrTail(),
        details: { exitCode: exit.code, signal: exit.signal },
      });
    }
    this.settle(job, { error: err });
  }

  private onLine(line: string, failStart: (what: string, reason: string) => void): void {
    if (line.trim() === '') return;
    let msg: EngineToWorker;
    try {
      msg = parseEngineMessage(line);
    } catch (e) {
      const what = `wrote something that is not the engine protocol (${(e as Error).message})`;
      if (this.state === 'starting') failStart(what, 'protocol');
      else
        this.killFor(
          'protocol',
          engineFailure('ENGINE_PROTOCOL_ERROR', { profile: this.profile.name, pid: this.pid, what }),
          this.profile.stopGraceMs,
        );
      return;
    }
    // Messages name their job; an id-less log or error in a one-job request is about that job.
    const id = 'id' in msg ? msg.id : undefined;
    const job = id !== undefined ? this.jobs.get(id) : this.jobs.size === 1 ? [...this.jobs.values()][0] : undefined;
    switch (msg.type) {
      case 'ready':
        if (this.state !== 'starting' || this.ready) {
          this.logger.warn({ enginePid: this.pid }, 'engine sent ready twice; ignored');
          return;
        }
        this.ready = msg;
        this.readyAt = Date.now();
        this.state = 'idle';
        this.idleSince = this.readyAt;
        this.emit('ready', msg);
        return;
      case 'log':
        this.logger[msg.level === 'error' ? 'error' : msg.level === 'warn' ? 'warn' : 'debug'](
          { enginePid: this.pid, engineLog: msg.message },
          'engine log',
        );
        if (job) job.hooks.onLog?.(`[${msg.level}] ${msg.message}`);
        else if (msg.id === undefined) for (const j of this.jobs.values()) j.hooks.onLog?.(`[${msg.level}] ${msg.message}`);
        return;
      case 'progress':
        if (job && !job.canceling) job.hooks.onProgress?.(msg.progress, msg.stage);
        return;
      case 'done':
        if (!job) break;
        if (job.canceling) this.settle(job, { error: this.canceledError(`finished job ${job.id} as it was canceled; result discarded`) });
        else this.settle(job, { done: msg });
        return;
      case 'canceled':
        if (!job) break;
        this.settle(job, { error: this.canceledError(`canceled job ${job.id} on request`) });
        return;
      case 'error':
        if (this.state === 'starting') {
          failStart(`reported ${msg.code} before it was ready: ${msg.message}`, 'start-failed');
          return;
        }
        if (!job) break;
        if (job.canceling) {
          this.settle(job, { error: this.canceledError(`stopped job ${job.id} on cancel (${msg.code})`) });
          return;
        }
        this.settle(job, {
          error: engineFailure(catalogueCode(msg.code), {
            profile: this.profile.name,
            pid: this.pid,
            what: `reported ${msg.code}: ${msg.message}`,
            ...(msg.retryable === undefined ? {} : { retryable: msg.retryable }),
            details: { engineCode: msg.code },
          }),
        });
        return;
    }
    this.logger.debug({ enginePid: this.pid, type: msg.type }, 'engine message for no current job; ignored');
  }
}
