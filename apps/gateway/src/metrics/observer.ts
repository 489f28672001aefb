import { EventEmitter } from 'node:events';
import { QueueEvents, type Job } from 'bullmq';
import type { RedisConnection as Redis } from '@photoenhance/queue';
import type { Logger } from 'pino';
import {
  QUEUE_STATES,
  decodeJobError,
  type HostEvent,
  type HostState,
  type JobChange,
  type JobData,
  type JobResult,
  type QueueSnapshot,
  type QueueState,
  type Sample,
} from '@photoenhance/contracts';

export { QUEUE_STATES, type HostEvent, type JobChange, type QueueSnapshot, type Sample };
import {
  ENGINE_START_EVENT,
  KEY_PREFIX,
  createRedis,
  engineStarts,
  keys,
  publicJobCounts,
  queueName,
  type RedisTarget,
} from '@photoenhance/queue';
import type { EngineDirectory } from '../engine-directory.js';
import type { JobService } from '../job-service.js';

/**
 * One observer per gateway: it watches every engine queue (BullMQ QueueEvents) and the worker heartbeats, keeps an hour
 * of samples and recent finished jobs, and tells listeners (metrics, the dashboard's SSE stream) what changed.
 * Sampling costs one getJobCounts per engine and one heartbeat scan per period, whether or not anyone is watching,
 * so the charts always cover the last hour.
 */

export interface FinishedJob {
  engine: string;
  jobId: string;
  /** canceled: a job canceled by a client or operator, queued (removed from the queue) or active (failed JOB_CANCELED). */
  outcome: 'completed' | 'failed' | 'canceled';
  code?: string;
  at: number;
  waitMs?: number;
  runMs?: number;
  totalMs?: number;
  /** True in exactly one gateway per finished job (a Redis SET NX decides), so counters summed over gateways are exact. */
  countHere: boolean;
}

/** Recycle events a worker may publish in HostState (optional; read defensively). */
interface PublishedRecycle {
  at: number;
  profile?: string;
  pid?: number;
  reason: string;
  detail?: string;
  rssBytes?: number;
}

const HOUR = 3_600_000;
const MAX_FINISHED = 5000;
const MAX_HOST_EVENTS = 300;

export class QueueObserver extends EventEmitter {
  private readonly streams = new Map<string, QueueEvents>();
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  private closed = false;
  private readonly seenTransition = new Map<string, number>();
  private readonly seenRecycles = new Map<string, Record<string, number>>();
  private readonly seenRecycleEvent = new Map<string, number>();
  /** Per engine: failed-set job id → canceled while running (see canceledInFailed). */
  private readonly canceledVerdict = new Map<string, Map<string, boolean>>();

  readonly samples: Sample[] = [];
  readonly finished: FinishedJob[] = [];
  readonly hostEvents: HostEvent[] = [];
  queues: QueueSnapshot[] = [];
  hosts: HostState[] = [];

  constructor(
    private readonly opts: {
      redis: Redis;
      target: RedisTarget;
      jobs: JobService;
      engines: EngineDirectory;
      logger: Logger;
      sampleMs: number;
    },
  ) {
    super();
    this.setMaxListeners(0);
  }

  start(): void {
    if (this.timer || this.closed) return;
    void this.tick(true);
    this.timer = setInterval(() => void this.tick(true), this.opts.sampleMs);
    this.timer.unref();
  }

  /** Take a sample now (after an operator action, so the page shows its effect at once). */
  async refresh(): Promise<void> {
    await this.tick(false);
  }

  engineNames(): string[] {
    return this.queues.map((q) => q.engine);
  }

  /** Read counts and heartbeats; `sample` also appends to the hour of chart samples (the timer only, so they stay evenly spaced). */
  private async tick(sample: boolean): Promise<void> {
    while (this.ticking) await this.ticking;
    if (this.closed) return;
    let done!: () => void;
    this.ticking = new Promise<void>((r) => (done = r));
    try {
      const names = (await this.opts.engines.list()).map((e) => e.name);
      for (const n of names) this.watch(n);
      const queues = await Promise.all(names.map((n) => this.snapshot(n)));
      const hosts = await this.opts.engines.hosts();
      this.queues = queues;
      this.hosts = hosts;
      this.noticeHostEvents(hosts);
      if (sample) this.record(queues, hosts);
      this.emit('sample', sample ? this.samples.at(-1) : undefined);
    } catch (err) {
      this.opts.logger.debug({ err }, 'dashboard sample failed');
    } finally {
      this.ticking = undefined;
      done();
    }
  }

  private async snapshot(engine: string): Promise<QueueSnapshot> {
    const q = this.opts.jobs.queue(engine);
    const [raw, paused] = await Promise.all([q.getJobCounts(...QUEUE_STATES), q.isPaused()]);
    // Prefetched jobs (BullMQ-active, not at an engine) count as waiting: engine-start.ts.
    const counts = (await publicJobCounts(
      this.opts.redis,
      engine,
      Object.fromEntries(QUEUE_STATES.map((s) => [s, raw[s] ?? 0])),
    )) as Record<QueueState, number>;
    const canceled = counts.failed > 0 ? await this.canceledInFailed(engine) : 0;
    counts.failed = Math.max(0, counts.failed - canceled);
    return { engine, paused, counts, canceled };
  }

  /**
   * How many jobs of BullMQ's failed set were canceled while they ran (failedReason JOB_CANCELED). A job's verdict does
   * not change while it stays in the set, so each id is read once and remembered; the memory is pruned to the set.
   */
  private async canceledInFailed(engine: string): Promise<number> {
    const q = this.opts.jobs.queue(engine);
    const ids = await this.opts.redis.zrange(q.toKey('failed'), 0, -1);
    const known = this.canceledVerdict.get(engine) ?? new Map<string, boolean>();
    const unread = ids.filter((id) => !known.has(id));
    for (let i = 0; i < unread.length; i += 500) {
      const slice = unread.slice(i, i + 500);
      const p = this.opts.redis.pipeline();
      for (const id of slice) p.hget(q.toKey(id), 'failedReason');
      const res = (await p.exec()) ?? [];
      slice.forEach((id, k) => {
        known.set(id, decodeJobError((res[k]?.[1] as string | null) ?? undefined)?.code === 'JOB_CANCELED');
      });
    }
    const present = new Set(ids);
    for (const id of known.keys()) if (!present.has(id)) known.delete(id);
    this.canceledVerdict.set(engine, known);
    return ids.reduce((n, id) => n + (known.get(id) ? 1 : 0), 0);
  }

  private record(queues: QueueSnapshot[], hosts: HostState[]): void {
    const now = Date.now();
    const sum = (pick: (c: Record<QueueState, number>) => number): number => queues.reduce((n, q) => n + pick(q.counts), 0);
    const sample: Sample = {
      at: now,
      queued: sum((c) => c.waiting + c.prioritized + c.delayed + c.paused + c['waiting-children']),
      active: sum((c) => c.active),
      failed: sum((c) => c.failed),
      canceled: queues.reduce((n, q) => n + q.canceled, 0),
      // Over the last minute rather than since the previous sample, so short sample periods do not spike the chart.
      completedPerMin: this.finished.filter((f) => f.outcome === 'completed' && f.at >= now - 60_000).length,
      failedPerMin: this.finished.filter((f) => f.outcome === 'failed' && f.at >= now - 60_000).length,
      canceledPerMin: this.finished.filter((f) => f.outcome === 'canceled' && f.at >= now - 60_000).length,
      hosts: {},
    };
    const recent = this.recent(5 * 60_000);
    const waits = recent.map((f) => f.waitMs).filter((v): v is number => v !== undefined);
    const runs = recent
      .filter((f) => f.outcome === 'completed')
      .map((f) => f.runMs)
      .filter((v): v is number => v !== undefined);
    if (waits.length) Object.assign(sample, { waitP50: percentile(waits, 50), waitP95: percentile(waits, 95) });
    if (runs.length) Object.assign(sample, { runP50: percentile(runs, 50), runP95: percentile(runs, 95) });
    for (const h of hosts) {
      const m = h.memory;
      if (!m || typeof m.totalBytes !== 'number') continue;
      const floor = h.admission?.thresholds?.minAvailableBytes ?? 0;
      const ratio = h.admission?.thresholds?.maxUsedRatio ?? 1;
      // The admission line as "used" bytes: whichever threshold bites first.
      const threshold = Math.max(0, Math.min(m.totalBytes - floor, m.totalBytes * ratio));
      sample.hosts[h.hostId] = {
        usedBytes: m.totalBytes - m.availableBytes,
        totalBytes: m.totalBytes,
        thresholdUsedBytes: threshold,
        holding: h.admission?.state === 'holding',
      };
    }
    this.samples.push(sample);
    while (this.samples.length > 0 && now - this.samples[0]!.at > HOUR) this.samples.shift();
    const cutoff = now - HOUR;
    while (this.finished.length > MAX_FINISHED || (this.finished.length > 0 && this.finished[0]!.at < cutoff)) this.finished.shift();
  }

  /** Turn heartbeat history (admission transitions, recycle counters, optional recycle events) into timeline entries. */
  private noticeHostEvents(hosts: HostState[]): void {
    for (const h of hosts) {
      const known = this.seenTransition.has(h.hostId);
      const lastSeen = this.seenTransition.get(h.hostId) ?? 0;
      let newest = lastSeen;
      for (const t of Array.isArray(h.transitions) ? h.transitions : []) {
        if (typeof t?.at !== 'number' || t.at <= lastSeen) continue;
        newest = Math.max(newest, t.at);
        const ev: HostEvent = {
          at: t.at,
          hostId: h.hostId,
          kind: t.state === 'holding' ? 'hold' : 'admit',
          reason: String(t.reason ?? ''),
          ...(typeof t.detail === 'string' && t.detail ? { detail: t.detail } : {}),
        };
        this.pushHostEvent(ev);
        // History from before this gateway started is shown, but only changes seen live move the metrics.
        if (known && t.state === 'holding') this.emit('hold', ev);
        if (known && t.state !== 'holding') this.emit('admit', ev, this.holdStart(h, t.at));
      }
      this.seenTransition.set(h.hostId, newest);

      const published = (h as HostState & { recycleEvents?: unknown }).recycleEvents;
      if (Array.isArray(published)) {
        const seen = this.seenRecycleEvent.get(h.hostId) ?? 0;
        let top = seen;
        for (const r of published as PublishedRecycle[]) {
          if (typeof r?.at !== 'number' || r.at <= seen || typeof r.reason !== 'string') continue;
          top = Math.max(top, r.at);
          this.pushHostEvent({
            at: r.at,
            hostId: h.hostId,
            kind: 'recycle',
            reason: r.reason,
            ...(r.profile ? { profile: r.profile } : {}),
            ...(typeof r.pid === 'number' ? { pid: r.pid } : {}),
            ...(r.detail ? { detail: r.detail } : {}),
          });
        }
        this.seenRecycleEvent.set(h.hostId, top);
      }
      // Counters always exist; without published events, a counter that moved becomes an approximate timeline entry.
      const before = this.seenRecycles.get(`${h.hostId}:${h.pid}`);
      const now = h.recycles && typeof h.recycles === 'object' ? h.recycles : {};
      if (before && !Array.isArray(published)) {
        for (const [reason, n] of Object.entries(now)) {
          const moved = n - (before[reason] ?? 0);
          for (let i = 0; i < Math.min(moved, 20); i++)
            this.pushHostEvent({ at: h.updatedAt ?? Date.now(), hostId: h.hostId, kind: 'recycle', reason, approximate: true });
        }
      }
      this.seenRecycles.set(`${h.hostId}:${h.pid}`, { ...now });
    }
  }

  private holdStart(h: HostState, admitAt: number): number | undefined {
    const ts = (h.transitions ?? []).filter((t) => t.at < admitAt);
    const last = ts.at(-1);
    return last?.state === 'holding' ? last.at : undefined;
  }

  private pushHostEvent(ev: HostEvent): void {
    this.hostEvents.push(ev);
    this.hostEvents.sort((a, b) => a.at - b.at);
    if (this.hostEvents.length > MAX_HOST_EVENTS) this.hostEvents.splice(0, this.hostEvents.length - MAX_HOST_EVENTS);
    this.emit('host-event', ev);
  }

  private watch(engine: string): void {
    if (this.streams.has(engine) || this.closed) return;
    const qe = new QueueEvents(queueName(engine), {
      connection: createRedis(this.opts.target, 'blocking', 'gateway-metrics', { lazy: true }),
      prefix: KEY_PREFIX,
    });
    qe.on('error', () => undefined);
    const change =
      (event: JobChange['event']) =>
      ({ jobId }: { jobId: string }) =>
        this.emit('job', { engine, jobId, event } satisfies JobChange);
    qe.on('waiting', change('waiting'));
    // Active = handed to an engine (BullMQ's own "active" means fetched, which a prefetched job is while still queued).
    (qe as unknown as NodeJS.EventEmitter).on(ENGINE_START_EVENT, change('active'));
    qe.on('delayed', change('delayed'));
    qe.on('removed', ({ jobId }) => {
      this.emit('job', { engine, jobId, event: 'removed' } satisfies JobChange);
      // A queued job that is canceled is removed from the queue: counted here, or it would not be counted at all.
      void this.finishCanceled(engine, jobId);
    });
    qe.on('progress', ({ jobId, data }) =>
      this.emit('job', { engine, jobId, event: 'progress', progress: typeof data === 'number' ? data : 0 } satisfies JobChange),
    );
    qe.on('completed', ({ jobId }) => {
      this.emit('job', { engine, jobId, event: 'completed' } satisfies JobChange);
      void this.finish(engine, jobId, 'completed');
    });
    qe.on('failed', ({ jobId, failedReason }) => {
      this.emit('job', { engine, jobId, event: 'failed' } satisfies JobChange);
      if (decodeJobError(failedReason)?.code === 'JOB_CANCELED') void this.finishCanceled(engine, jobId);
      else void this.finish(engine, jobId, 'failed', failedReason);
    });
    this.streams.set(engine, qe);
  }

  private async finish(engine: string, jobId: string, outcome: 'completed' | 'failed', failedReason?: string): Promise<void> {
    try {
      const [found, [engineAt]] = await Promise.all([
        this.opts.jobs.queue(engine).getJob(jobId),
        engineStarts(this.opts.redis, engine, [jobId]),
      ]);
      const job = found as Job<JobData, JobResult> | undefined;
      const at = job?.finishedOn ?? Date.now();
      const created = job?.data?.createdAt ?? job?.timestamp;
      const started = engineAt ?? job?.processedOn;
      const f: FinishedJob = { engine, jobId, outcome, at, countHere: await this.claim(jobId, at) };
      if (outcome === 'failed') f.code = decodeJobError(failedReason ?? job?.failedReason)?.code ?? 'ENGINE_FAILED';
      if (started && created) f.waitMs = Math.max(0, started - created);
      if (started && job?.finishedOn) f.runMs = Math.max(0, job.finishedOn - started);
      if (created && job?.finishedOn) f.totalMs = Math.max(0, job.finishedOn - created);
      this.finished.push(f);
      if (this.finished.length > MAX_FINISHED) this.finished.shift();
      this.emit('finished', f);
    } catch (err) {
      this.opts.logger.debug({ err, jobId }, 'could not read a finished job');
    }
  }

  /** A canceled job, once (by its tombstone; a removal for any other reason, e.g. expiry, is not a cancel). */
  private async finishCanceled(engine: string, jobId: string): Promise<void> {
    try {
      const canceledAt = Number(await this.opts.redis.hget(keys.record(jobId), 'canceledAt'));
      if (!canceledAt || this.finished.some((f) => f.jobId === jobId && f.outcome === 'canceled')) return;
      // Claimed under one key whichever event saw it first (removed, or failed with JOB_CANCELED): counted once.
      const f: FinishedJob = {
        engine,
        jobId,
        outcome: 'canceled',
        code: 'JOB_CANCELED',
        at: canceledAt,
        countHere: await this.claim(jobId, 0),
      };
      this.finished.push(f);
      if (this.finished.length > MAX_FINISHED) this.finished.shift();
      this.emit('finished', f);
    } catch (err) {
      this.opts.logger.debug({ err, jobId }, 'could not read a canceled job');
    }
  }

  /** Every gateway sees every queue event; one of them (the first to set this key) counts it in its metrics. */
  private async claim(jobId: string, finishedOn: number): Promise<boolean> {
    try {
      const ok = await this.opts.redis.set(keys.metricsCounted(jobId, finishedOn), '1', 'EX', 3600, 'NX');
      return ok === 'OK';
    } catch {
      return true;
    }
  }

  /** Recent finished jobs (last `windowMs`) for percentiles and throughput. */
  recent(windowMs: number, engine?: string): FinishedJob[] {
    const since = Date.now() - windowMs;
    return this.finished.filter((f) => f.at >= since && (!engine || f.engine === engine));
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    const all = [...this.streams.values()];
    this.streams.clear();
    await Promise.all(all.map((qe) => qe.close().catch(() => undefined)));
    this.removeAllListeners();
  }
}

export function percentile(values: number[], p: number): number | undefined {
  if (values.length === 0) return undefined;
  const s = [...values].sort((a, b) => a - b);
  const i = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
  return s[i];
}
