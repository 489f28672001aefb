import type { FastifyReply, FastifyRequest } from 'fastify';
import type { JobChange, QueueObserver } from '../metrics/observer.js';
import { SseStream } from '../sse.js';
import { overview } from './overview.js';

/** How often job changes are flushed to browsers, coalesced by job id (a burst of 1000 jobs is one message). */
const JOB_FLUSH_MS = 250;
/** After job changes, re-read queue counts at most this often (between the regular samples). */
const COUNTS_REFRESH_MS = 500;

/**
 * The dashboard's one live stream (GET /dashboard/api/events): `snapshot` on connect (overview + an hour of samples),
 * then `overview` on every sample and after job changes, and `jobs` with coalesced job changes. Browsers never poll.
 */
export class DashboardStream {
  private readonly clients = new Set<SseStream>();
  private pending = new Map<string, JobChange>();
  private flushTimer: NodeJS.Timeout | undefined;
  private refreshTimer: NodeJS.Timeout | undefined;

  constructor(private readonly observer: QueueObserver) {
    observer.on('sample', () => this.broadcast('overview', overview(observer)));
    observer.on('job', (c: JobChange) => this.onJob(c));
  }

  count(): number {
    return this.clients.size;
  }

  open(req: FastifyRequest, reply: FastifyReply): void {
    const stream: SseStream = new SseStream(req, reply, { retryMs: 2000, onClose: () => this.clients.delete(stream) });
    stream.send('snapshot', { ...overview(this.observer), samples: this.observer.samples });
    this.clients.add(stream);
  }

  private onJob(c: JobChange): void {
    if (this.clients.size === 0) return;
    const prev = this.pending.get(c.jobId);
    // Progress never hides a state change that is still waiting to be sent.
    if (!(c.event === 'progress' && prev && prev.event !== 'progress')) this.pending.set(c.jobId, c);
    this.flushTimer ??= setTimeout(() => this.flush(), JOB_FLUSH_MS);
    if (c.event !== 'progress') {
      this.refreshTimer ??= setTimeout(() => {
        this.refreshTimer = undefined;
        void this.observer.refresh();
      }, COUNTS_REFRESH_MS);
    }
  }

  private flush(): void {
    this.flushTimer = undefined;
    const batch = [...this.pending.values()];
    this.pending = new Map();
    if (batch.length) this.broadcast('jobs', batch);
  }

  private broadcast(event: string, data: unknown): void {
    for (const client of this.clients) client.send(event, data);
  }

  close(): void {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    for (const client of [...this.clients]) client.close();
    this.clients.clear();
  }
}
