import { createHmac } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { Queue, Worker, type Job } from 'bullmq';
import type { Logger } from 'pino';
import { WEBHOOK_HEADERS, type WebhookPayload } from '@photoenhance/contracts';
import { KEY_PREFIX, createRedis, type RedisConnection, type RedisTarget } from '@photoenhance/queue';
import { assertDeliverable, guardedLookup } from './url-guard.js';

export const WEBHOOK_QUEUE = 'webhooks';

export interface DeliveryData {
  url: string;
  payload: WebhookPayload;
}

export interface DeliverySettings {
  redis: RedisTarget;
  secret: string;
  allowPrivate: boolean;
  attempts: number;
  backoffMs: number;
  timeoutMs: number;
  /** How long finished deliveries are remembered (dedupes the same event seen by several gateways). */
  keepSeconds: number;
}

/** `sha256=<hex HMAC-SHA256(secret, `${timestamp}.${body}`)>` */
export function signWebhook(secret: string, timestamp: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

/** POST the body; resolves with the HTTP status. Connects only to addresses the guard accepts; never follows redirects. */
function post(url: URL, body: string, headers: Record<string, string>, s: DeliverySettings): Promise<number> {
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send(
      url,
      {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
          'user-agent': 'photoenhance-gateway-webhooks',
          ...headers,
        },
        lookup: guardedLookup(s.allowPrivate),
        timeout: s.timeoutMs,
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${s.timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * Webhook deliveries as a BullMQ queue processed by the gateways: retried with exponential backoff
 * (WEBHOOK_ATTEMPTS, WEBHOOK_BACKOFF_MS). The job id is the event id, so an event seen by several gateways is queued
 * (and delivered) once. Any 2xx is success; anything else, a timeout or a refused address is retried.
 */
export class WebhookDeliveries {
  readonly queue: Queue<DeliveryData>;
  private worker: Worker<DeliveryData> | undefined;
  /** BullMQ does not close connections it was handed: close() does. */
  private readonly connections: RedisConnection[] = [];

  constructor(
    private readonly s: DeliverySettings,
    private readonly logger: Logger,
  ) {
    const connection = this.connect('gateway-webhooks');
    this.queue = new Queue<DeliveryData>(WEBHOOK_QUEUE, { connection, prefix: KEY_PREFIX });
    this.queue.on('error', () => undefined);
  }

  start(): void {
    if (this.worker) return;
    const connection = this.connect('gateway-webhook-worker');
    this.worker = new Worker<DeliveryData>(WEBHOOK_QUEUE, (job) => this.deliver(job), { connection, prefix: KEY_PREFIX, concurrency: 8 });
    this.worker.on('error', () => undefined);
    this.worker.on('failed', (job, err) => {
      if (job) this.logger.warn({ delivery: job.id, url: job.data.url, attempt: job.attemptsMade, err }, 'webhook delivery failed');
    });
  }

  async enqueue(deliveryId: string, url: string, payload: WebhookPayload): Promise<void> {
    await this.queue.add(
      'deliver',
      { url, payload },
      {
        jobId: deliveryId,
        attempts: this.s.attempts,
        backoff: { type: 'exponential', delay: this.s.backoffMs },
        removeOnComplete: { age: this.s.keepSeconds },
        removeOnFail: { age: this.s.keepSeconds },
      },
    );
  }

  private async deliver(job: Job<DeliveryData>): Promise<{ status: number }> {
    const url = await assertDeliverable(job.data.url, this.s.allowPrivate);
    const body = JSON.stringify(job.data.payload);
    const timestamp = String(Math.floor(Date.now() / 1000));
    const status = await post(
      url,
      body,
      {
        [WEBHOOK_HEADERS.signature]: signWebhook(this.s.secret, timestamp, body),
        [WEBHOOK_HEADERS.timestamp]: timestamp,
        [WEBHOOK_HEADERS.event]: `${job.data.payload.subject}.${job.data.payload.event}`,
        [WEBHOOK_HEADERS.delivery]: job.data.payload.id,
      },
      this.s,
    );
    if (status < 200 || status >= 300) throw new Error(`the receiver answered HTTP ${status}`);
    return { status };
  }

  async close(): Promise<void> {
    await this.worker?.close().catch(() => undefined);
    await this.queue.close().catch(() => undefined);
    for (const c of this.connections.splice(0)) c.disconnect();
  }

  private connect(name: string): RedisConnection {
    const c = createRedis(this.s.redis, 'blocking', name);
    c.on('error', () => undefined);
    this.connections.push(c);
    return c;
  }
}
