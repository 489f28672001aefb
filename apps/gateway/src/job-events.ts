import { QueueEvents } from 'bullmq';
import { KEY_PREFIX, queueName, redisOptions } from '@photoenhance/queue';

export type JobEvent =
  | { type: 'active'; jobId: string }
  | { type: 'progress'; jobId: string; progress: number }
  | { type: 'completed'; jobId: string }
  | { type: 'failed'; jobId: string; reason: string }
  | { type: 'waiting'; jobId: string }
  | { type: 'removed'; jobId: string };

type Listener = (e: JobEvent) => void;

/**
 * One BullMQ QueueEvents stream per engine queue, shared by every SSE client of this gateway,
 * fanned out to listeners by job id.
 */
export class JobEventHub {
  private readonly streams = new Map<string, QueueEvents>();
  private readonly listeners = new Map<string, Set<Listener>>();

  constructor(private readonly redisUrl: string) {}

  subscribe(engine: string, jobId: string, fn: Listener): () => void {
    this.ensure(engine);
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

  clientCount(): number {
    let n = 0;
    for (const s of this.listeners.values()) n += s.size;
    return n;
  }

  private emit(e: JobEvent): void {
    for (const fn of this.listeners.get(e.jobId) ?? []) fn(e);
  }

  private ensure(engine: string): void {
    if (this.streams.has(engine)) return;
    const qe = new QueueEvents(queueName(engine), { connection: { ...redisOptions(this.redisUrl), maxRetriesPerRequest: null }, prefix: KEY_PREFIX });
    qe.on('error', () => undefined);
    qe.on('active', ({ jobId }) => this.emit({ type: 'active', jobId }));
    qe.on('progress', ({ jobId, data }) => this.emit({ type: 'progress', jobId, progress: typeof data === 'number' ? data : 0 }));
    qe.on('completed', ({ jobId }) => this.emit({ type: 'completed', jobId }));
    qe.on('failed', ({ jobId, failedReason }) => this.emit({ type: 'failed', jobId, reason: failedReason }));
    qe.on('waiting', ({ jobId }) => this.emit({ type: 'waiting', jobId }));
    qe.on('delayed', ({ jobId }) => this.emit({ type: 'waiting', jobId }));
    qe.on('removed', ({ jobId }) => this.emit({ type: 'removed', jobId }));
    this.streams.set(engine, qe);
  }

  async close(): Promise<void> {
    const all = [...this.streams.values()];
    this.streams.clear();
    await Promise.all(all.map((qe) => qe.close().catch(() => undefined)));
  }
}
