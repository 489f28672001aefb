import { hostname } from 'node:os';
import { DelayedError, UnrecoverableError, Worker, type Job } from 'bullmq';
import type { RedisConnection as Redis } from '@photoenhance/queue';
import type { Logger } from 'pino';
import { createLogger } from '@photoenhance/config';
import {
  FALLBACK_BG_TILE,
  encodeJobError,
  parseControlMessage,
  type HostState,
  type RecycleEvent,
  type JobData,
  type JobResult,
} from '@photoenhance/contracts';
import { EngineJobError, Governor, autoBgTile, recycleEvent, type BgTileChoice, type EngineProfile } from '@photoenhance/governor';
import {
  JobRecords,
  KEY_PREFIX,
  assertNoEviction,
  createRedis,
  keys,
  listHosts,
  markEngineStart,
  publishHost,
  queueName,
  removeHost,
  waitForRedis,
} from '@photoenhance/queue';
import type { Storage } from '@photoenhance/storage';
import {
  deadInstances,
  describeInstance,
  forgetInstance,
  registerInstance,
  reclaimLock,
  releaseLocks,
  type InstanceRecord,
  type QueueKeys,
} from '@photoenhance/queue';
import type { WorkerConfig } from './config.js';
import { resolveProfiles } from './resolve-profiles.js';
import { EngineGate, type GateEntry } from './engine-gate.js';
import { JobStaging, storageFailure, type StagedJob } from './staging.js';

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
/** How long a job whose result is committed still takes a cancel that raced its completion (completed(), cancel()). */
const LATE_CANCEL_MS = 10_000;

export class EnhanceWorker {
  readonly config: Readonly<WorkerConfig>;
  readonly logger: Logger;
  readonly profiles: EngineProfile[];
  readonly governor: Governor;
  private readonly staging: JobStaging;
  private readonly redis: Redis;
  private readonly subscriber: Redis;
  private readonly records: JobRecords;
  private readonly workers = new Map<string, Worker<JobData, JobResult>>();
  private readonly active = new Map<string, AbortController>();
  /**
   * Jobs whose result is committed, from the moment process() returns until shortly after BullMQ has completed them. A
   * cancel cannot stop these any more (the gateway publishes one when the job was locked, i.e. running): it is applied
   * once BullMQ has completed the job, by removing the job and its files, so a canceled job never reads as completed.
   */
  private readonly finishing = new Map<string, { job: Job<JobData, JobResult>; at: number; completed: boolean; canceled: boolean }>();
  /** Per engine: at most poolSize jobs at the engine; prefetched ones wait here, staged (engine-gate.ts). */
  private readonly gates = new Map<string, EngineGate>();
  private readonly recycleEvents: RecycleEvent[] = [];
  private heartbeat: NodeJS.Timeout | undefined;
  /** Recovery (see recover() and stalledCheck()): this process's registry record, the stalled-check timer, and the
   * end of the quiet period after a Redis reconnect, during which no worker moves anyone's jobs. */
  private instance: InstanceRecord | undefined;
  private stalledTimer: NodeJS.Timeout | undefined;
  private quietUntil = 0;
  private redisWasDown = false;
  private readonly startedAt = Date.now();
  private closing: Promise<void> | undefined;
  /** Set the moment close() starts (before `closing` is assigned), so prefetched jobs go back at once. */
  private stopping = false;
  /**
   * Per engine: whether this host may prefetch. Not while another live, admitting host offering that engine has a free
   * engine process (as its last heartbeat says): a job held here would wait for this host's busy engine instead of
   * starting there at once.
   */
  private readonly prefetchAllowed = new Map<string, boolean>();

  /** Job storage, created by start() (staging.start). */
  private get storage(): Storage {
    return this.staging.storage;
  }

  constructor(opts: WorkerOptions) {
    this.config = opts.config;
    this.logger = opts.logger ?? createLogger({ name: 'worker', level: opts.config.logLevel, format: opts.config.logFormat });
    this.profiles = opts.profiles ?? resolveProfiles(opts.config);
    this.staging = new JobStaging(opts.config);
    this.redis = createRedis(opts.config.redis, 'blocking', 'worker');
    this.subscriber = createRedis(opts.config.redis, 'blocking', 'worker-cancel');
    for (const r of [this.redis, this.subscriber]) r.on('error', (err: Error) => this.logger.debug({ err }, 'redis connection error'));
    this.redis.on('close', () => (this.redisWasDown = true));
    this.redis.on('ready', () => {
      if (!this.redisWasDown) return;
      this.redisWasDown = false;
      this.onRedisBack();
    });
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
    await waitForRedis(this.redis, 30_000, config.redis);
    await assertNoEviction(this.redis);
    // Storage reachable (a wrong bucket, key or endpoint stops the start naming the variable); dead workers' temp folders go.
    const cleaned = await this.staging.start(config.storageCheckTimeoutMs);
    if (cleaned) logger.info({ cleaned, staging: this.staging.base }, 'removed staging folders left by stopped workers');
    await this.subscriber.subscribe(keys.cancelChannel, keys.controlChannel);
    this.subscriber.on('message', (channel: string, message: string) => {
      if (channel === keys.cancelChannel) this.cancel(message);
      else void this.control(message);
    });
    await this.governor.start();
    this.governor.on('admission', (state) => {
      for (const w of this.workers.values()) {
        if (state.state === 'holding') w.pause(true);
        else w.resume();
      }
      // Prefetched jobs go back to the queue for hosts that can take them.
      for (const g of this.gates.values()) g.releaseWaiting();
      void this.publish();
    });
    this.governor.on('recycle', (info) => {
      this.recycleEvents.push(recycleEvent(info));
      if (this.recycleEvents.length > MAX_RECYCLE_EVENTS) this.recycleEvents.splice(0, this.recycleEvents.length - MAX_RECYCLE_EVENTS);
      void this.publish();
    });
    await this.refreshPeers();
    for (const profile of this.profiles) {
      this.gates.set(
        profile.name,
        new EngineGate(
          () => this.engineSlots(profile),
          () => this.stopping || !this.governor.admitting(),
        ),
      );
      const worker = new Worker<JobData, JobResult>(queueName(profile.name), (job, token) => this.process(job, token, profile), {
        connection: createRedis(config.redis, 'blocking', `worker-${profile.name}`),
        prefix: KEY_PREFIX,
        // poolSize jobs at the engines, plus PREFETCH per engine held ready (fitConcurrency); BullMQ renews all their locks.
        concurrency: profile.poolSize * (1 + (this.prefetchAllowed.get(profile.name) ? config.prefetch : 0)),
        autorun: false,
        // A stalled job (its worker died) is retried maxStalledCount more times, then failed.
        maxStalledCount: config.maxStalledCount,
        lockDuration: config.lockDurationMs,
        // BullMQ renews on a timer of lockRenewTime/2: every lockDuration/4 to /2, so a lock keeps ≥ half its life.
        lockRenewTime: config.lockDurationMs / 2,
        stalledInterval: config.stalledIntervalMs,
        // The stalled check runs on our timer instead (stalledCheck), so it can wait out a Redis reconnect.
        skipStalledCheck: true,
      });
      worker.on('stalled', (jobId) =>
        logger.warn({ jobId, engine: profile.name }, 'stalled job moved back to the queue (its worker stopped renewing its lock)'),
      );
      worker.on('error', (err) => logger.warn({ err, engine: profile.name }, 'queue worker error'));
      worker.on('failed', (job, err) =>
        logger.info({ jobId: job?.id, engine: profile.name, reason: err.message, attempts: job?.attemptsMade }, 'job attempt failed'),
      );
      worker.on('completed', (job) => {
        logger.info({ jobId: job.id, engine: profile.name }, 'job completed');
        this.completed(job);
      });
      this.workers.set(profile.name, worker);
      if (!this.governor.admitting()) worker.pause(true);
      void worker.run().catch((err: unknown) => logger.error({ err }, 'queue worker stopped'));
    }
    this.instance = describeInstance({
      hostId: config.hostId,
      startedAt: this.startedAt,
      workers: Object.fromEntries([...this.workers.values()].map((w) => [w.name, w.id])),
      ttlMs: config.heartbeatMs * 3,
    });
    await this.publish();
    await this.recover();
    this.heartbeat = setInterval(() => void this.publish().then(() => this.recover()), config.heartbeatMs);
    this.scheduleStalledCheck();
    logger.info({ hostId: config.hostId, engines: this.profiles.map((p) => p.name), storage: this.storage.location }, 'worker ready');
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

  /**
   * A job whose result is committed, kept LATE_CANCEL_MS for a cancel that races its completion. Entries go in time
   * order, so the expired ones are at the front: dropped here, with no timer per job.
   */
  private remember(id: string, job: Job<JobData, JobResult>): void {
    const now = Date.now();
    for (const [key, f] of this.finishing) {
      if (now - f.at < LATE_CANCEL_MS) break;
      this.finishing.delete(key);
    }
    this.finishing.delete(id); // a later attempt of the same job goes to the back
    this.finishing.set(id, { job, at: now, completed: false, canceled: false });
  }

  /** A cancel published by a gateway: stops a job this worker runs, or withdraws one it has just completed. */
  private cancel(id: string): void {
    const a = this.active.get(id);
    if (a) {
      a.abort();
      return;
    }
    const f = this.finishing.get(id);
    if (!f) return;
    f.canceled = true;
    if (f.completed) void this.withdraw(id, f.job);
  }

  /** BullMQ completed a job: applies a cancel that came after its result was committed; remembers it a while for late ones. */
  private completed(job: Job<JobData, JobResult>): void {
    const id = job.data.id;
    const f = this.finishing.get(id);
    if (!f) return;
    if (f.canceled) {
      void this.withdraw(id, job);
      return;
    }
    // The cancel message and the completion travel on two connections: one may still arrive (cancel() above).
    f.completed = true;
  }

  private async withdraw(id: string, job: Job<JobData, JobResult>): Promise<void> {
    this.finishing.delete(id);
    this.logger.info({ jobId: id }, 'canceled as it completed: its result is removed');
    await job.remove().catch(() => undefined);
    await this.storage.removeJob(id).catch(() => undefined);
  }

  /** Operator commands from the gateway (e.g. raise the admission floor to drain a host). */
  private async control(raw: string): Promise<void> {
    const parsed = parseControlMessage(raw);
    if (!parsed.ok) {
      // Anyone with Redis access can publish here: a bad command is reported, never allowed to stop the worker.
      this.logger.warn({ problem: parsed.problem, received: raw.slice(0, 500) }, 'ignored an invalid operator control message');
      return;
    }
    const msg = parsed.message;
    if (msg.hostId !== '*' && msg.hostId !== this.config.hostId) return;
    if (msg.type === 'admission') {
      try {
        const state = await this.governor.setAdmission(msg.admission);
        this.logger.info(
          { admission: msg.admission, state: state.state, reason: state.reason },
          'admission thresholds changed by operator',
        );
      } catch (err) {
        this.logger.warn({ err, admission: msg.admission }, 'ignored an operator control message the governor refused');
        return;
      }
      await this.publish();
    }
  }

  private async publish(): Promise<void> {
    // While Redis is away, beats would only queue up and arrive stale.
    if (this.closing || this.redis.status !== 'ready') return;
    try {
      await publishHost(this.redis, this.hostState(), this.config.heartbeatMs * 3);
      if (this.instance) await registerInstance(this.redis, this.instance);
      await this.refreshPeers();
    } catch (err) {
      this.logger.debug({ err }, 'heartbeat not published');
    }
  }

  private queueKeys(w: Worker): QueueKeys {
    return { active: w.keys.active!, stalled: w.keys.stalled!, stalledCheck: w.keys['stalled-check']!, jobPrefix: w.toKey('') };
  }

  /** After a reconnect every worker first keeps what it runs, and moves nobody's jobs until all had time to do so. */
  private quiet(): boolean {
    return !this.closing && this.redis.status === 'ready' && Date.now() >= this.quietUntil;
  }

  /**
   * Redis is back (restarted, or reachable again): locks of our running jobs may have expired meanwhile. Take them back
   * while the jobs are still ours (active, unlocked), before any worker's stalled check runs again.
   */
  private onRedisBack(): void {
    this.quietUntil = Date.now() + this.config.heartbeatMs * 2;
    this.logger.info(
      { quietMs: this.config.heartbeatMs * 2 },
      'Redis is back: keeping the locks of running jobs, no stalled checks for a moment',
    );
    void this.publish();
    for (const w of this.workers.values()) {
      // BullMQ's lock manager knows which jobs this worker runs, and with which token.
      const tracked = (w as unknown as { lockManager?: { trackedJobs?: Map<string, { token: string }> } }).lockManager?.trackedJobs;
      for (const [jobId, { token }] of tracked ?? []) {
        void reclaimLock(this.redis, this.queueKeys(w), jobId, token, this.config.lockDurationMs).then(
          (ok) =>
            this.logger.info(
              { jobId, kept: ok },
              ok ? 'kept the lock of a running job across the Redis outage' : 'a running job was taken over while Redis was away',
            ),
          () => undefined,
        );
      }
    }
  }

  /** Before a result is committed: the job must still be ours (lock held, or taken back while still active). */
  private async stillOurs(job: Job<JobData, JobResult>, token: string | undefined, profile: EngineProfile): Promise<boolean> {
    const w = this.workers.get(profile.name);
    if (!token || !w || job.id === undefined) return true;
    return reclaimLock(this.redis, this.queueKeys(w), job.id, token, this.config.lockDurationMs);
  }

  /**
   * Move the jobs of dead worker instances back to the queue now, instead of when their locks expire: an instance is
   * dead when its heartbeat expired, or (same machine) its process is gone. Runs with every heartbeat.
   */
  private async recover(): Promise<void> {
    if (!this.instance || !this.quiet()) return;
    try {
      for (const { record, why } of await deadInstances(this.redis, this.instance)) {
        let handledAll = true;
        for (const [queue, workerId] of Object.entries(record.workers)) {
          const w = [...this.workers.values()].find((x) => x.name === queue);
          if (!w) {
            handledAll = false; // a host running that engine will
            continue;
          }
          const released = await releaseLocks(this.redis, this.queueKeys(w), [workerId]);
          if (released.length) {
            this.logger.warn(
              { deadHost: record.hostId, deadPid: record.pid, why, jobIds: released, queue },
              `worker ${record.hostId} (pid ${record.pid}) is dead (${why}): moving its ${released.length} running job(s) back to the queue`,
            );
            await this.stalledCheck(w);
          }
        }
        if (handledAll) await forgetInstance(this.redis, record);
      }
    } catch (err) {
      this.logger.debug({ err }, 'dead-worker check failed; the next heartbeat tries again');
    }
  }

  /** BullMQ's own stalled check (its Lua script), on our timer so it can pause after a reconnect. */
  private async stalledCheck(only?: Worker): Promise<void> {
    for (const w of only ? [only] : this.workers.values()) {
      if (!this.quiet() || (await w.client).status !== 'ready') return;
      try {
        await (w as unknown as { moveStalledJobsToWait(): Promise<void> }).moveStalledJobsToWait();
      } catch (err) {
        this.logger.debug({ err, queue: w.name }, 'stalled check failed; retried on the next tick');
      }
    }
  }

  private scheduleStalledCheck(): void {
    if (this.closing) return;
    this.stalledTimer = setTimeout(
      () => void this.stalledCheck().finally(() => this.scheduleStalledCheck()),
      this.config.stalledIntervalMs,
    );
  }

  /** Who else could start this host's engines' jobs now (heartbeats): decides prefetchAllowed. One read per beat. */
  private async refreshPeers(): Promise<void> {
    if (this.config.prefetch === 0) return;
    let peers: HostState[];
    try {
      peers = (await listHosts(this.redis)).filter((h) => h.hostId !== this.config.hostId);
    } catch (err) {
      this.logger.debug({ err: (err as Error).message }, 'peer hosts not read; prefetch setting kept');
      return;
    }
    for (const profile of this.profiles) {
      const idleElsewhere = peers.some((h) => {
        const offer = h.engines.find((e) => e.name === profile.name);
        if (!offer || h.admission.state !== 'admitting') return false;
        const busy = h.processes.filter((p) => p.profile === profile.name && p.state === 'busy').length;
        return busy < offer.poolSize;
      });
      if (this.prefetchAllowed.get(profile.name) !== !idleElsewhere) {
        this.logger.info(
          { engine: profile.name, prefetch: !idleElsewhere },
          idleElsewhere
            ? 'prefetch paused: another host has a free engine for these jobs'
            : 'prefetch on: no other host has a free engine for these jobs',
        );
      }
      this.prefetchAllowed.set(profile.name, !idleElsewhere);
      if (this.workers.has(profile.name)) this.fitConcurrency(profile);
    }
  }

  /** Jobs an engine works on at once: one per process, or a batch per process once its engine declared batches. */
  private engineSlots(profile: EngineProfile): number {
    return profile.poolSize * (this.governor.batching(profile.name)?.maxBatch ?? 1);
  }

  /**
   * Fetch enough to fill the engines (batches included) plus PREFETCH per slot. The batch size is known only once an
   * engine said ready, so this is re-fitted as jobs arrive; the gate lets newly allowed jobs in.
   */
  private fitConcurrency(profile: EngineProfile): void {
    const w = this.workers.get(profile.name);
    const want = this.engineSlots(profile) * (1 + (this.prefetchAllowed.get(profile.name) ? this.config.prefetch : 0));
    if (w && w.concurrency !== want) {
      w.concurrency = want;
      this.gates.get(profile.name)?.admit();
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
    // Listen for a cancel first, then look for one that came before: no window in which a cancel is missed.
    const abort = new AbortController();
    this.active.set(data.id, abort);
    // The engine works in a private folder (staging.ts); the result is published only by commit() below.
    let canceled: boolean;
    let staged: StagedJob | undefined;
    // The ticket keeps fetch (priority) order at the engine whichever job stages first; dropped on every early exit.
    const gate = this.gates.get(profile.name)!;
    const ticket = gate.reserve();
    let entry: GateEntry;
    try {
      try {
        [canceled, staged] = await Promise.all([this.records.isCanceled(data.id), this.staging.stage(data)]);
      } catch (err) {
        this.active.delete(data.id);
        if (abort.signal.aborted)
          throw new UnrecoverableError(encodeJobError({ code: 'JOB_CANCELED', message: 'canceled before it started' }));
        throw (await storageFailure(err, job, token, this.config.storageRetryMs)) ?? err;
      }
      // A cancel that came while staging removed the input too: it is a cancel, not a missing input.
      if (abort.signal.aborted) canceled = true;
      if (canceled || !staged) {
        this.active.delete(data.id);
        await this.staging.release(staged);
        if (canceled) {
          await this.storage.removeJob(data.id).catch(() => undefined);
          throw new UnrecoverableError(encodeJobError({ code: 'JOB_CANCELED', message: 'canceled before it started' }));
        }
        throw new UnrecoverableError(encodeJobError({ code: 'INPUT_MISSING', message: `the stored input ${data.input.key} is gone` }));
      }
      // Prefetch: wait here, staged, while this engine's processes are busy with earlier jobs.
      this.fitConcurrency(profile);
      entry = await gate.enter(ticket, abort.signal);
    } finally {
      gate.drop(ticket);
    }
    if (entry !== 'run') {
      this.active.delete(data.id);
      await this.staging.release(staged);
      if (entry === 'canceled') {
        // Canceled while prefetched: like a queued job, it never reaches the engine.
        await this.storage.removeJob(data.id).catch(() => undefined);
        throw new UnrecoverableError(encodeJobError({ code: 'JOB_CANCELED', message: 'canceled before it started' }));
      }
      if (token) {
        log.info('host is holding: the prefetched job goes back to the queue');
        await job.moveToDelayed(Date.now() + this.config.holdRequeueMs, token);
        throw new DelayedError();
      }
    }
    // From here the job is started (public status active, startedAt): the mark goes out while the engine already
    // works, and is in Redis before the result is committed.
    const started = markEngineStart(this.redis, profile.name, data.id, job.processedOn ?? 0).catch((err: unknown) => {
      log.debug({ err: (err as Error).message }, 'engine start not marked');
    });
    const { input, output } = staged;
    // The first progress write comes after PROGRESS_INTERVAL_MS: a short job costs no progress write (a Lua call and an
    // event per job), and its progress is 1 once it completes anyway.
    let lastProgress = Date.now();
    let logLines = 0;
    const jobLog = (line: string): void => {
      if (logLines++ < MAX_JOB_LOG_LINES) void job.log(line.slice(0, 2000)).catch(() => undefined);
    };
    // Written with the outcome (one Redis write per job on the happy path, not two).
    const attempt = `attempt ${job.attemptsMade + 1} on host ${this.config.hostId}, engine ${profile.name}`;
    // bgTile left unset: sized now for the GPU the engine runs on (its free memory may have changed while the job
    // waited); recorded in the result's meta.bgTileChoice (no job log line: one Redis write fewer per job).
    const tile = data.options.bgTile === undefined ? this.chooseBgTile(profile, data) : undefined;
    const options = tile ? { ...data.options, bgTile: tile.bgTile } : data.options;
    try {
      const run = await this.governor
        .run(
          profile.name,
          { id: data.id, input, output, options },
          {
            signal: abort.signal,
            onProgress: (p) => {
              const now = Date.now();
              if (now - lastProgress < PROGRESS_INTERVAL_MS) return;
              lastProgress = now;
              // After the start mark, so no one sees progress on a job that still reads as queued.
              void started.then(() => job.updateProgress(Math.max(0, Math.min(1, p)))).catch(() => undefined);
            },
            onLog: jobLog,
          },
        )
        .finally(() => {
          // The engine is free the moment it answers: the next (prefetched) job goes in while this one commits.
          if (entry === 'run') gate.release();
          this.fitConcurrency(profile);
        });
      await started;
      jobLog(
        `${attempt}: done by ${run.engine.name} ${run.engine.version} (pid ${run.engine.pid ?? '?'}) in ${run.timings.runMs} ms, after ${run.timings.waitMs} ms waiting for an engine`,
      );
      // Redis may have been away while the engine ran: commit only a job that is still ours (BullMQ's finish checks the
      // lock too; this takes back a lock that merely expired meanwhile, so the result is not thrown away). Needed even
      // without a Redis outage: a frozen (SIGSTOPped) worker keeps its connection but loses its lock.
      if (!(await this.stillOurs(job, token, profile))) {
        log.warn('the job was taken over by another worker while this one was cut off from Redis; its result is not committed');
        throw new Error('job lost its lock while Redis was away');
      }
      const bytes = await this.staging.commit(staged, data, profile.name);
      // Canceled while the engine worked or the result was committed: it ends canceled, not completed (the finally
      // removes the files). A cancel after this point is handled by completed().
      if (abort.signal.aborted)
        throw new EngineJobError('JOB_CANCELED', `job ${data.id} canceled while its result was committed`, { retryable: false });
      this.remember(data.id, job);
      const d = run.done;
      return {
        width: d.output.width,
        height: d.output.height,
        format: data.options.format,
        bytes,
        key: data.outputKey,
        applied: d.applied,
        engine: {
          name: run.engine.name,
          version: run.engine.version,
          host: this.config.hostId,
          ...(run.engine.pid ? { pid: run.engine.pid } : {}),
        },
        timings: {
          runMs: run.timings.runMs,
          waitMs: run.timings.waitMs,
          ...(run.timings.batchWaitMs !== undefined ? { batchWaitMs: run.timings.batchWaitMs } : {}),
          ...(d.timings ?? {}),
        },
        ...(d.meta || tile ? { meta: { ...d.meta, ...(tile ? { bgTileChoice: tile } : {}) } } : {}),
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
      await this.staging.release(staged);
      if (abort.signal.aborted) await this.storage.removeJob(data.id).catch(() => undefined);
    }
  }

  private chooseBgTile(profile: EngineProfile, data: JobData): BgTileChoice {
    const snap = this.governor.snapshot();
    return autoBgTile({
      gpu: snap.gpu,
      processes: snap.processes,
      profile: profile.name,
      gpus: profile.gpus,
      width: data.input.width,
      height: data.input.height,
      fallback: FALLBACK_BG_TILE,
    });
  }

  /** Turn an engine failure into what BullMQ should do: retry (Error), stop (UnrecoverableError), or re-delay. */
  private async failure(
    err: unknown,
    job: Job<JobData, JobResult>,
    token: string | undefined,
    profile: EngineProfile,
    log: Logger,
  ): Promise<Error> {
    const storageDown = await storageFailure(err, job, token, this.config.storageRetryMs);
    if (storageDown) {
      log.warn({ err }, 'storage unavailable; the attempt will be retried');
      return storageDown;
    }
    if (!(err instanceof EngineJobError)) {
      log.error({ err }, 'unexpected failure');
      return new Error(encodeJobError({ code: 'ENGINE_FAILED', message: (err as Error).message ?? String(err) }));
    }
    const reason = encodeJobError({ code: err.code, message: err.message });
    log.warn({ code: err.code, message: err.message, ...err.details }, 'engine run failed');
    if (err.code === 'ENGINE_MEMORY_LIMIT' || err.code === 'ENGINE_GPU_MEMORY_LIMIT') {
      // Memory-limit retries (host or GPU) are counted apart from other retries, so they neither loop nor eat the normal attempts.
      const failures = (job.data.memoryLimitFailures ?? 0) + 1;
      await job.updateData({ ...job.data, memoryLimitFailures: failures });
      if (failures > profile.memoryRetries) {
        return new UnrecoverableError(
          encodeJobError({ code: err.code, message: `${err.message}; gave up after ${failures} memory-limit failure(s)` }),
        );
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
    this.stopping = true;
    this.closing ??= (async () => {
      const { logger } = this;
      logger.info('worker stopping');
      if (this.heartbeat) clearInterval(this.heartbeat);
      if (this.stalledTimer) clearTimeout(this.stalledTimer);
      // Prefetched jobs that have not reached an engine go back to the queue instead of running in the grace period.
      for (const g of this.gates.values()) g.releaseWaiting();
      const closing = Promise.all([...this.workers.values()].map((w) => w.close().catch(() => undefined)));
      const graceful = await Promise.race([closing.then(() => true), delay(this.config.shutdownGraceMs).then(() => false)]);
      if (!graceful) {
        logger.warn(
          { graceMs: this.config.shutdownGraceMs },
          'jobs still running after the grace period; stopping their engines (they will be retried)',
        );
        for (const a of this.active.values()) a.abort();
      }
      await this.governor.close();
      await Promise.race([closing, delay(5000)]);
      await removeHost(this.redis, this.config.hostId).catch(() => undefined);
      if (this.instance) await forgetInstance(this.redis, this.instance).catch(() => undefined);
      this.subscriber.disconnect();
      this.redis.disconnect();
      this.staging.close();
      logger.info('worker stopped');
    })();
    return this.closing;
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}
