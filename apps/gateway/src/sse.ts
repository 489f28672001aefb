import type { FastifyReply, FastifyRequest } from 'fastify';
import { EVENT_ID_PATTERN, compareEventIds } from './job-events.js';

/** A comment line every 15 s keeps proxies and idle timers from closing a quiet stream. */
const PING_MS = 15_000;

export interface SseOptions {
  /** `retry:` sent first: how long a browser waits before reconnecting. */
  retryMs?: number;
  /** Called once when the stream ends, whoever ends it (client gone, close(), server shutdown). */
  onClose?: () => void;
}

/**
 * One server-sent events response: the gateway's job, batch and dashboard streams all go through this, so the
 * headers, the framing, the keep-alive ping and the end of a stream are written once.
 *
 * `lastId` is the newest event id sent (BullMQ stream ids, `<ms>-<seq>`); `isStale(id)` says an event was already sent
 * or covered by a snapshot, so a resumed stream sends nothing twice.
 */
export class SseStream {
  private ended = false;
  private readonly res: FastifyReply['raw'];
  private readonly ping: NodeJS.Timeout;
  lastId = '0-0';

  constructor(
    req: FastifyRequest,
    reply: FastifyReply,
    private readonly opts: SseOptions = {},
  ) {
    // The route answers by itself from here on: Fastify sends nothing more for this request.
    reply.hijack();
    this.res = reply.raw;
    this.res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    if (opts.retryMs !== undefined) this.res.write(`retry: ${opts.retryMs}\n\n`);
    this.ping = setInterval(() => this.res.write(': ping\n\n'), PING_MS);
    this.ping.unref();
    req.raw.on('close', () => this.close());
  }

  get closed(): boolean {
    return this.ended;
  }

  send(event: string, data: unknown, id?: string): void {
    if (this.ended) return;
    if (id) this.seen(id);
    this.res.write(`${id ? `id: ${id}\n` : ''}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  /** Count `id` as delivered without sending it (a snapshot already covers it). */
  seen(id: string): void {
    if (compareEventIds(id, this.lastId) > 0) this.lastId = id;
  }

  isStale(id: string | undefined): boolean {
    return id !== undefined && compareEventIds(id, this.lastId) <= 0;
  }

  close(): void {
    if (this.ended) return;
    this.ended = true;
    clearInterval(this.ping);
    this.opts.onClose?.();
    this.res.end();
  }
}

/** A valid Last-Event-ID header (a BullMQ event stream id), or undefined. */
export function lastEventIdOf(req: FastifyRequest): string | undefined {
  const raw = req.headers['last-event-id'];
  const v = (Array.isArray(raw) ? raw[0] : raw)?.trim();
  return v && EVENT_ID_PATTERN.test(v) ? v : undefined;
}
