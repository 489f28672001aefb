import { mkdir, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import { dirname } from 'node:path';
import { DelayedError, UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { createLogger } from '@photoenhance/config';
import { encodeJobError, type ControlMessage, type HostState, type RecycleEvent, type JobData, type JobResult } from '@photoenhance/contracts';
import { EngineJobError, Governor, type EngineProfile } from '@photoenhance/governor';
import { JobRecords, KEY_PREFIX, assertNoEviction, createRedis, keys, publishHost, queueName, removeHost, waitForRedis } from '@photoenhance/queue';
import { LocalStorage } from '@photoenhance/storage';
import type { WorkerConfig } from './config.js';
import { resolveProfiles } from './resolve-profiles.js';

/** Progress updates to Redis at most this often per job. */
const PROGRESS_INTERVAL_MS = 250;
/** Recent recycles kept in the heartbeat. */
const MAX_RECYCLE_EVENTS = 50;
/** Engine log lines kept on a job. */
const MAX_JOB_LOG_LINES = 200;

export interface WorkerOptions {
  config: Readonly<WorkerConfig>;
  logger?: Logger;
  /** Profiles to run; by default resolved from config. */
  profiles?: EngineProfile[];
}

/**
 * The worker app: one BullMQ Worker per engine queue, consuming only while the governor admits, running each job on a
 * governed engine process. Holding pauses consumption; a job fetched in the race goes back to the queue untouched.
 */
export class EnhanceWorker {
  readonly config: Readonly<WorkerConfig>;
  readonly logger: Logger;
  readonly profiles: EngineProfile[];
  readonly governor: Governor;
  private readonly storage: LocalStorage;
  private readonly redis: Redis;
  private readonly subscriber: Redis;
  private readonly records: JobRecords;
  private readonly workers = new Map<string, Worker<JobData, JobResult>>();
  private readonly active = new Map<string, AbortController>();
  private readonly recycleEvents: RecycleEvent[] = [];
  private heartbeat: NodeJS.Timeout | undefined;
  private readonly startedAt = Date.now();
  private closing: Promise<void> | undefined;

  constructor(opts: WorkerOptions) {
    this.config = opts.config;
    this.logger = opts.logger ?? createLogger({ name: 'worker', level: opts.config.logLevel, format: opts.config.logFormat });
    this.profiles = opts.profiles ?? resolveProfiles(opts.config);
    this.storage = new LocalStorage(opts.config.storageDir);
    this.redis = createRedis(opts.config.redisUrl, 'blocking', 'worker');
    this.subscriber = createRedis(opts.config.redisUrl, 'blocking', 'worker-cancel');
    for (const r of [this.redis, this.subscriber]) r.on('error', (err: Error) => this.logger.debug({ err: err.message }, 'redis connection error'));
    this.records = new JobRecords(this.redis, 0);
    const c = opts.config;
    this.governor = new Governor({
      hostId: c.hostId,
      profiles: this.profiles,
      admission: {
        ...(c.admissionMinAvailable !== undefined ? { minAvailableBytes: Number(c.admissionMinAvailable) } : {}),
        maxUsedRatio: c.admissionMaxUsedRatio,
        maxPressureSome10: c.admissionMaxPressure,
        checkIntervalMs: c.admissionCheckMs,
      },
      enforcement: c.enforcement,
      startFailureLimit: c.startFailureLimit,
      logger: this.logger.child({ component: 'governor' }),
      // GPU parts only where an engine is a GPU engine: other hosts never run nvidia-smi.
      ...(c.gpu !== 'off' && this.profiles.some((p) => p.gpus !== undefined)
        ? { gpu: { nvidiaSmi: c.nvidiaSmi, ...(c.gpuMarginBytes !== undefined ? { marginBytes: Number(c.gpuMarginBytes) } : {}) } }
        : {}),
    });
  }

  async start(): Promise<void> {
    const { config, logger } = this;
    await waitForRedis(this.redis, 30_000, config.redisUrl);
    await assertNoEviction(this.redis);
    await this.subscriber.subscribe(keys.cancelChannel, keys.controlChannel);
    this.subscriber.on('message', (channel: string, message: string) => {
      if (channel === keys.cancelChannel) this.active.get(message)?.abort();
      else void this.control(message);
    });
    await this.governor.start();
    this.governor.on('admission', (state) => {
      for (const w of this.workers.values()) {
        if (state.state === 'holding') w.pause(true);
        else w.resume();
      }
      void this.publish();
    });
    this.governor.on('recycle', (info) => {
      const f = info.figures;
      const num = (v: unknown): number | undefined => (typeof v === 'number' ? v : undefined);
      const peak = num(f.peakBytes) ?? num(f.rssBytes);
      const limit = num(f.limitBytes);
      const detail = [typeof f.exit === 'string' ? f.exit : undefined, typeof f.enforcedBy === 'string' ? `enforced by ${f.enforcedBy}` : undefined].filter(Boolean).join('; ');
      this.recycleEvents.push({
        at: Date.now(),
        profile: info.profile,
        reason: info.reason,
        ...(info.pid !== undefined ? { pid: info.pid } : {}),
        ...(detail ? { detail } : {}),
        ...(peak !== undefined ? { rssBytes: peak } : {}),
        ...(limit !== undefined ? { limitBytes: limit } : {}),
      });
      if (this.recycleEvents.length > MAX_RECYCLE_EVENTS) this.recycleEvents.splice(0, this.recycleEvents.length - MAX_RECYCLE_EVENTS);
      void this.publish();
    });
    for (const profile of this.profiles) {
      const worker = new Worker<JobData, JobResult>(queueName(profile.name), (job, token) => this.process(job, token, profile), {
        connection: createRedis(config.redisUrl, 'blocking', `worker-${profile.name}`),
        prefix: KEY_PREFIX,
        concurrency: profile.poolSize,
        autorun: false,
        // A stalled job (its worker died) is retried once more, then failed.
        maxStalledCount: 1,
      });
      worker.on('error', (err) => logger.warn({ err: err.message, engine: profile.name }, 'queue worker error'));
      worker.on('failed', (job, err) => logger.info({ jobId: job?.id, engine: profile.name, reason: err.message, attempts: job?.attemptsMade }, 'job attempt failed'));
      worker.on('completed', (job) => logger.info({ jobId: job.id, engine: profile.name }, 'job completed'));
      this.workers.set(profile.name, worker);
      if (!this.governor.admitting()) worker.pause(true);
      void worker.run().catch((err: unknown) => logger.error({ err }, 'queue worker stopped'));
    }
    await this.publish();
    this.heartbeat = setInterval(() => void this.publish(), config.heartbeatMs);
    logger.info({ hostId: config.hostId, engines: this.profiles.map((p) => p.name), storage: this.storage.root }, 'worker ready');
  }

  hostState(): HostState {
    const snap = this.governor.snapshot();
    return {
      hostId: this.config.hostId,
      hostname: hostname(),
      pid: process.pid,
      startedAt: this.startedAt,
      updatedAt: Date.now(),
      engines: snap.engines,
      admission: snap.admission,
      memory: snap.memory,
      enforcement: snap.enforcement,
      processes: snap.processes,
      recycles: snap.recycles,
      recycleEvents: [...this.recycleEvents],
      transitions: snap.transitions,
      ...(snap.gpu ? { gpu: snap.gpu } : {}),
    };
  }

  /** Operator commands from the gateway (e.g. raise the admission floor to drain a host). */
  private async control(raw: string): Promise<void> {
    let msg: ControlMessage;
    try {
      msg = JSON.parse(raw) as ControlMessage;
    } catch {
      return;
    }
    if (msg.hostId !== '*' && msg.hostId !== this.config.hostId) return;
    if (msg.type === 'admission') {
      const state = await this.governor.setAdmission(msg.admission);
      this.logger.info({ admission: msg.admission, state: state.state, reason: state.reason }, 'admission thresholds changed by operator');
      await this.publish();
    }
  }

  private async publish(): Promise<void> {
    if (this.closing) return;
    try {
      await publishHost(this.redis, this.hostState(), this.config.heartbeatMs * 3);
    } catch (err) {
      this.logger.debug({ err: (err as Error).message }, 'heartbeat not published');
    }
  }

  private async process(job: Job<JobData, JobResult>, token: string | undefined, profile: EngineProfile): Promise<JobResult> {
    const data = job.data;
    const log = this.logger.child({ jobId: data.id, engine: profile.name });
    if (!this.governor.admitting() && token) {
      // Fetched in the race with a pause: hand it back for any host that can take it, without spending an attempt.
      await job.moveToDelayed(Date.now() + this.config.holdRequeueMs, token);
      throw new DelayedError();
    }
    const input = this.storage.path(data.input.key);
    const output = this.storage.path(data.outputKey);
    // The output normally goes beside the input, in the job's own folder, which the gateway made.
    if (dirname(output) !== dirname(input)) await mkdir(dirname(output), { recursive: true });
    // Listen for a cancel first, then look for one that came before: no window in which a cancel is missed.
    const abort = new AbortController();
    this.active.set(data.id, abort);
    const [canceled, inputStat] = await Promise.all([this.records.isCanceled(data.id), stat(input).catch(() => undefined)]);
    if (canceled || !inputStat) {
      this.active.delete(data.id);
      if (canceled) {
        await this.storage.removeJob(data.id).catch(() => undefined);
        throw new UnrecoverableError(encodeJobError({ code: 'JOB_CANCELED', message: 'canceled before it started' }));
      }
      throw new UnrecoverableError(encodeJobError({ code: 'INPUT_MISSING', message: `the stored input ${data.input.key} is gone` }));
    }
    let lastProgress = 0;
    let logLines = 0;
    const jobLog = (line: string): void => {
      if (logLines++ < MAX_JOB_LOG_LINES) void job.log(line.slice(0, 2000)).catch(() => undefined);
    };
    // Written with the outcome (one Redis write per job on the happy path, not two).
    const attempt = `attempt ${job.attemptsMade + 1} on host ${this.config.hostId}, engine ${profile.name}`;
    try {
      const run = await this.governor.run(profile.name, { id: data.id, input, output, options: data.options }, {
        signal: abort.signal,
        onProgress: (p) => {
          const now = Date.now();
          if (now - lastProgress < PROGRESS_INTERVAL_MS) return;
          lastProgress = now;
          void job.updateProgress(Math.max(0, Math.min(1, p))).catch(() => undefined);
        },
        onLog: jobLog,
      });
      jobLog(`${attempt}: done by ${run.engine.name} ${run.engine.version} (pid ${run.engine.pid ?? '?'}) in ${run.timings.runMs} ms, after ${run.timings.waitMs} ms waiting for an engine`);
      const st = await stat(output).catch(() => undefined);
      if (!st || st.size === 0) throw new EngineJobError('OUTPUT_MISSING', `engine ${profile.name} reported done but ${data.outputKey} is missing or empty`);
      const d = run.done;
      return {
        width: d.output.width,
        height: d.output.height,
        format: data.options.format,
        bytes: st.size,
        key: data.outputKey,
        applied: d.applied,
        engine: { name: run.engine.name, version: run.engine.version, host: this.config.hostId, ...(run.engine.pid ? { pid: run.engine.pid } : {}) },
        timings: { runMs: run.timings.runMs, waitMs: run.timings.waitMs, ...(d.timings ?? {}) },
        ...(d.meta ? { meta: d.meta } : {}),
      };
    } catch (err) {
      if (err instanceof EngineJobError) {
        jobLog(`${attempt}: failed: ${err.code}: ${err.message}`);
        const tail = err.details.stderrTail;
        if (typeof tail === 'string' && tail) jobLog(`engine stderr (last lines):\n${tail}`);
      } else if (!(err instanceof DelayedError)) jobLog(`${attempt}: failed: ${(err as Error).message}`);
      throw await this.failure(err, job, token, profile, log);
    } finally {
      this.active.delete(data.id);
      if (abort.signal.aborted) await this.storage.removeJob(data.id).catch(() => undefined);
    }
  }

  /** Turn an engine failure into what BullMQ should do: retry (Error), stop (UnrecoverableError), or re-delay. */
  private async failure(err: unknown, job: Job<JobData, JobResult>, token: string | undefined, profile: EngineProfile, log: Logger): Promise<Error> {
    if (!(err instanceof EngineJobError)) {
      log.error({ err }, 'unexpected failure');
      return new Error(encodeJobError({ code: 'ENGINE_FAILED', message: (err as Error).message ?? String(err) }));
    }
    const reason = encodeJobError({ code: err.code, message: err.message });
    log.warn({ code: err.code, message: err.message, ...err.details }, 'engine run failed');
    if (err.code === 'ENGINE_MEMORY_LIMIT') {
      // Memory-limit retries are counted apart from other retries, so they neither loop nor eat the normal attempts.
      const failures = (job.data.memoryLimitFailures ?? 0) + 1;
      await job.updateData({ ...job.data, memoryLimitFailures: failures });
      if (failures > profile.memoryRetries) {
        return new UnrecoverableError(encodeJobError({ code: 'ENGINE_MEMORY_LIMIT', message: `${err.message}; gave up after ${failures} memory-limit failure(s)` }));
      }
      if (token) {
        await job.updateProgress(0).catch(() => undefined);
        await job.moveToDelayed(Date.now() + 500, token);
        return new DelayedError();
      }
    }
    if (!err.retryable) return new UnrecoverableError(reason);
    return new Error(reason);
  }

  /** Stop taking jobs, give running ones a grace period, stop engines, leave Redis. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const { logger } = this;
      logger.info('worker stopping');
      if (this.heartbeat) clearInterval(this.heartbeat);
      const closing = Promise.all([...this.workers.values()].map((w) => w.close().catch(() => undefined)));
      const graceful = await Promise.race([closing.then(() => true), delay(this.config.shutdownGraceMs).then(() => false)]);
      if (!graceful) {
        logger.warn({ graceMs: this.config.shutdownGraceMs }, 'jobs still running after the grace period; stopping their engines (they will be retried)');
        for (const a of this.active.values()) a.abort();
      }
      await this.governor.close();
      await Promise.race([closing, delay(5000)]);
      await removeHost(this.redis, this.config.hostId).catch(() => undefined);
      this.subscriber.disconnect();
      this.redis.disconnect();
      logger.info('worker stopped');
    })();
    return this.closing;
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}
