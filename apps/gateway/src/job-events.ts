import { QueueEvents } from 'bullmq';
import type { RedisConnection as Redis } from '@photoenhance/queue';
import { ENGINE_START_EVENT, KEY_PREFIX, createRedis, keys, queueName, type RedisTarget } from '@photoenhance/queue';

/**
 * `eventId` is the id of the event in the queue's BullMQ event stream (`<ms>-<seq>`): monotonic per engine queue and
 * the same for every gateway, so it works as an SSE event id across connections (Last-Event-ID resume).
 */
export type JobEvent = { jobId: string; eventId?: string; engine?: string } & (
  | { type: 'active' }
  | { type: 'progress'; progress: number }
  | { type: 'completed' }
  | { type: 'failed'; reason: string }
  | { type: 'waiting' }
  | { type: 'removed' }
);

type Listener = (e: JobEvent) => void;

/** Stream key of an engine queue's BullMQ events. */
export function eventStreamKey(engine: string): string {
  return keys.queueEvents(engine);
}

/** Compare two stream ids (`<ms>-<seq>`); -1, 0, 1. */
export function compareEventIds(a: string, b: string): number {
  const [am = 0n, as = 0n] = a.split('-').map((x) => BigInt(x));
  const [bm = 0n, bs = 0n] = b.split('-').map((x) => BigInt(x));
  if (am !== bm) return am < bm ? -1 : 1;
  if (as !== bs) return as < bs ? -1 : 1;
  return 0;
}

export const EVENT_ID_PATTERN = /^\d{1,20}-\d{1,20}$/;

/** Turn one raw stream entry (field list) into a JobEvent, as QueueEvents does. */
export function parseStreamEntry(engine: string, eventId: string, fields: string[]): JobEvent | undefined {
  const f: Record<string, string> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) f[fields[i]!] = fields[i + 1]!;
  const jobId = f.jobId;
  if (!jobId) return undefined;
  const base = { jobId, eventId, engine };
  switch (f.event) {
    // BullMQ's "active" means fetched (a prefetched job is still queued); the job is active once its engine has it.
    case ENGINE_START_EVENT:
      return { ...base, type: 'active' };
    case 'progress': {
      let p: unknown;
      try {
        p = JSON.parse(f.data ?? '0');
      } catch {
        p = 0;
      }
      return { ...base, type: 'progress', progress: typeof p === 'number' ? p : 0 };
    }
    case 'completed':
      return { ...base, type: 'completed' };
    case 'failed':
      return { ...base, type: 'failed', reason: f.failedReason ?? '' };
    case 'waiting':
    case 'delayed':
      return { ...base, type: 'waiting' };
    case 'removed':
      return { ...base, type: 'removed' };
    default:
      return undefined;
  }
}

/**
 * One BullMQ QueueEvents stream per engine queue, shared by every SSE client of this gateway,
 * fanned out to listeners by job id, and to global listeners (webhooks, batch progress).
 */
export class JobEventHub {
  private readonly streams = new Map<string, QueueEvents>();
  private readonly listeners = new Map<string, Set<Listener>>();
  private readonly global = new Set<Listener>();

  constructor(private readonly redis: RedisTarget) {}

  subscribe(engine: string, jobId: string, fn: Listener): () => void {
    this.watch(engine);
    let set = this.listeners.get(jobId);
    if (!set) {
      set = new Set();
      this.listeners.set(jobId, set);
    }
    set.add(fn);
    return () => {
      set.delete(fn);
      if (set.size === 0) this.listeners.delete(jobId);
    };
  }

  /** Every event of every watched engine queue. */
  onAny(fn: Listener): () => void {
    this.global.add(fn);
    return () => this.global.delete(fn);
  }

  clientCount(): number {
    let n = 0;
    for (const s of this.listeners.values()) n += s.size;
    return n;
  }

  /** Events of one queue after `afterId` (exclusive), oldest first, for Last-Event-ID resume. */
  async since(redis: Redis, engine: string, afterId: string, count = 5000): Promise<JobEvent[]> {
    const rows = (await redis.xrange(eventStreamKey(engine), `(${afterId}`, '+', 'COUNT', count)) as Array<[string, string[]]>;
    return rows.map(([id, fields]) => parseStreamEntry(engine, id, fields)).filter((e): e is JobEvent => e !== undefined);
  }

  /** The id of the newest event of a queue (the position a snapshot read now stands at), or `0-0`. */
  async lastId(redis: Redis, engine: string): Promise<string> {
    const rows = (await redis.xrevrange(eventStreamKey(engine), '+', '-', 'COUNT', 1)) as Array<[string, string[]]>;
    return rows[0]?.[0] ?? '0-0';
  }

  private emit(e: JobEvent): void {
    for (const fn of this.listeners.get(e.jobId) ?? []) fn(e);
    for (const fn of this.global) fn(e);
  }

  /** Start following an engine queue's events (idempotent). */
  watch(engine: string): void {
    if (this.streams.has(engine)) return;
    const qe = new QueueEvents(queueName(engine), {
      connection: createRedis(this.redis, 'blocking', 'gateway-events', { lazy: true }),
      prefix: KEY_PREFIX,
    });
    qe.on('error', () => undefined);
    // Our own event (engine-start.ts); QueueEvents emits every event of the stream by name, but types only BullMQ's.
    (qe as unknown as NodeJS.EventEmitter).on(ENGINE_START_EVENT, ({ jobId }: { jobId: string }, eventId: string) =>
      this.emit({ type: 'active', jobId, eventId, engine }),
    );
    qe.on('progress', ({ jobId, data }, eventId) =>
      this.emit({ type: 'progress', jobId, progress: typeof data === 'number' ? data : 0, eventId, engine }),
    );
    qe.on('completed', ({ jobId }, eventId) => this.emit({ type: 'completed', jobId, eventId, engine }));
    qe.on('failed', ({ jobId, failedReason }, eventId) => this.emit({ type: 'failed', jobId, reason: failedReason, eventId, engine }));
    qe.on('waiting', ({ jobId }, eventId) => this.emit({ type: 'waiting', jobId, eventId, engine }));
    qe.on('delayed', ({ jobId }, eventId) => this.emit({ type: 'waiting', jobId, eventId, engine }));
    qe.on('removed', ({ jobId }, eventId) => this.emit({ type: 'removed', jobId, eventId, engine }));
    this.streams.set(engine, qe);
  }

  async close(): Promise<void> {
    const all = [...this.streams.values()];
    this.streams.clear();
    this.global.clear();
    await Promise.all(all.map((qe) => qe.close().catch(() => undefined)));
  }
}
