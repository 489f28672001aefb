import { ApiError, type HostState } from '@photoenhance/contracts';
import { bullKeys, type RedisConnection as Redis } from '@photoenhance/queue';
import type { GatewayConfig } from '../config.js';

export interface QueueLoad {
  /** waiting + prioritized + delayed over every engine queue. */
  waiting: number;
  /** Jobs finished (completed or failed) per second over the drain window, all engines. */
  drainPerSecond: number;
  at: number;
}

type Settings = Pick<
  GatewayConfig,
  'maxQueuedJobs' | 'holdingGraceMs' | 'queueDepthCacheMs' | 'drainWindowMs' | 'retryAfterMinSeconds' | 'retryAfterMaxSeconds'
>;

/** Memory reasons are the ones that make a host hold for memory (the governor's reasons start with MEMORY_). */
const isMemoryHold = (h: HostState): boolean => h.admission.state === 'holding' && h.admission.reason.startsWith('MEMORY');

/**
 * The gateway's queue bound: refuses new submissions (503) while the queue is over its bound or every worker has held
 * for memory past a grace period. Accepted jobs are never dropped; this only says "not now" to new ones. (Whether a
 * worker host takes work is the governor's admission; this is the gateway's own backpressure.)
 *
 * Retry-After comes from the measured drain rate: the time the workers need, at the rate they finished jobs over the
 * last DRAIN_WINDOW_MS, to work off the excess over the limit plus a tenth of the limit (so a client that comes back
 * finds room, and the queue has not run dry meanwhile), clamped to [RETRY_AFTER_MIN_SECONDS, RETRY_AFTER_MAX_SECONDS].
 */
export class QueueBound {
  private cached: QueueLoad | undefined;
  private inflight: Promise<QueueLoad> | undefined;
  /**
   * Jobs this gateway queued since the cached figure was measured. Added to it, so a burst inside one cache period
   * cannot run past the limit (without it, 42 submissions in 230 ms all saw the same "0 waiting").
   */
  private queuedSinceMeasure = 0;

  constructor(
    private readonly redis: Redis,
    private readonly settings: Settings,
    private readonly engineNames: () => Promise<string[]>,
    private readonly hosts: () => Promise<HostState[]>,
  ) {}

  /**
   * Submissions that passed the bound and are being queued now (reserve()): counted as waiting, so requests that pass
   * the check together cannot all see the same free room (20 parallel submissions once got in against a limit of 4).
   */
  private reserved = 0;

  /** Queue depth and drain rate, cached for QUEUE_DEPTH_CACHE_MS (one pipelined round trip when stale). */
  async load(now = Date.now()): Promise<QueueLoad> {
    const fresh = this.cached && now - this.cached.at < this.settings.queueDepthCacheMs ? this.cached : await this.remeasure(now);
    // Read after the await: the counters as they are now, not as they were when the measurement started.
    return { ...fresh, waiting: fresh.waiting + this.queuedSinceMeasure + this.reserved };
  }

  /** Count a job this gateway just queued (until the next measurement sees it in Redis). */
  noteQueued(n = 1): void {
    this.queuedSinceMeasure += n;
  }

  private remeasure(now: number): Promise<QueueLoad> {
    this.inflight ??= (async () => {
      // Jobs queued from here on may or may not be in the new figure: counting them twice errs on the safe side.
      const queuedBefore = this.queuedSinceMeasure;
      const load = await this.measure(now);
      this.queuedSinceMeasure -= queuedBefore;
      return load;
    })().finally(() => {
      this.inflight = undefined;
    });
    return this.inflight;
  }

  private async measure(now: number): Promise<QueueLoad> {
    const names = await this.engineNames();
    const since = now - this.settings.drainWindowMs;
    const p = this.redis.pipeline();
    for (const name of names) {
      const k = bullKeys(name);
      p.llen(k.wait);
      p.llen(k.paused);
      p.zcard(k.prioritized);
      p.zcard(k.delayed);
      // Finished sets are scored by finishedOn (ms): a cheap, shared measure of what every worker did lately.
      p.zcount(k.completed, since, '+inf');
      p.zcount(k.failed, since, '+inf');
      // The oldest finish inside the window: right after a start or a quiet spell the rate is measured over the time
      // actually observed, not the whole window (which would make Retry-After far too long).
      p.zrangebyscore(k.completed, since, '+inf', 'WITHSCORES', 'LIMIT', 0, 1);
      p.zrangebyscore(k.failed, since, '+inf', 'WITHSCORES', 'LIMIT', 0, 1);
    }
    const res = (await p.exec()) ?? [];
    let waiting = 0;
    let finished = 0;
    let oldest = now;
    res.forEach(([err, v], i) => {
      if (err) throw err;
      const slot = i % 8;
      if (slot < 4) waiting += Number(v);
      else if (slot < 6) finished += Number(v);
      else {
        const score = (v as string[])[1];
        if (score !== undefined) oldest = Math.min(oldest, Number(score));
      }
    });
    const spanMs = Math.max(1000, Math.min(this.settings.drainWindowMs, now - oldest));
    const load = { waiting, drainPerSecond: finished / (spanMs / 1000), at: now };
    this.cached = load;
    return load;
  }

  retryAfterSeconds(load: QueueLoad, backlog: number): number {
    const { retryAfterMinSeconds: min, retryAfterMaxSeconds: max } = this.settings;
    // Nothing finished in the window: no rate to go by; the middle of the range is an honest guess, not a promise.
    const raw = load.drainPerSecond > 0 ? backlog / load.drainPerSecond : Math.min(max, Math.max(min, 30));
    return Math.max(min, Math.min(max, Math.ceil(raw)));
  }

  /** Throws 503 QUEUE_FULL or WORKERS_HOLDING when a submission must wait; returns the load otherwise. */
  async assertAccepting(now = Date.now()): Promise<QueueLoad> {
    const load = await this.load(now);
    this.assertRoom(load);
    await this.assertHostsTaking(load, now);
    return load;
  }

  /**
   * The check just before queueing: like assertAccepting, and if there is room one place is held for this submission
   * until it is queued (`commit`, counted from then on as queued) or given up (`release`). Room check and reservation
   * run with no await between them, so parallel submissions are counted exactly within this gateway.
   */
  async reserve(now = Date.now()): Promise<{ commit(): void; release(): void }> {
    const measured = await this.load(now);
    // Summed again here, not in load(): parallel callers resume from one shared measurement one after another, and each
    // must see the places the ones before it just took.
    const load = { ...measured, waiting: (this.cached ?? measured).waiting + this.queuedSinceMeasure + this.reserved };
    this.assertRoom(load);
    this.reserved++;
    let held = true;
    const free = (): void => {
      if (held) this.reserved--;
      held = false;
    };
    try {
      await this.assertHostsTaking(load, now);
    } catch (err) {
      free();
      throw err;
    }
    return {
      commit: () => {
        if (held) this.noteQueued();
        free();
      },
      release: free,
    };
  }

  private assertRoom(load: QueueLoad): void {
    const limit = this.settings.maxQueuedJobs;
    if (load.waiting >= limit) {
      const retry = this.retryAfterSeconds(load, load.waiting - limit + Math.ceil(limit / 10));
      throw new ApiError(
        'QUEUE_FULL',
        `${load.waiting} jobs are waiting, at the gateway's limit of ${limit} (MAX_QUEUED_JOBS); the workers finish about ${load.drainPerSecond.toFixed(2)} jobs/s`,
        {
          extensions: { waiting: load.waiting, limit, drainPerSecond: round(load.drainPerSecond), retryAfterSeconds: retry },
          headers: { 'retry-after': String(retry) },
        },
      );
    }
  }

  private async assertHostsTaking(load: QueueLoad, now: number): Promise<void> {
    const hosts = await this.hosts();
    const grace = this.settings.holdingGraceMs;
    if (hosts.length > 0 && hosts.every((h) => isMemoryHold(h) && now - h.admission.since >= grace)) {
      const heldMs = Math.min(...hosts.map((h) => now - h.admission.since));
      const retry = this.retryAfterSeconds(load, Math.max(1, load.waiting));
      throw new ApiError(
        'WORKERS_HOLDING',
        `Every worker host (${hosts.length}) has been holding for memory for at least ${Math.round(heldMs / 1000)} s (${[...new Set(hosts.map((h) => h.admission.reason))].join(', ')})`,
        {
          extensions: {
            hosts: hosts.map((h) => ({ hostId: h.hostId, reason: h.admission.reason, since: new Date(h.admission.since).toISOString() })),
            retryAfterSeconds: retry,
          },
          headers: { 'retry-after': String(retry) },
        },
      );
    }
  }
}

const round = (n: number): number => Math.round(n * 1000) / 1000;
