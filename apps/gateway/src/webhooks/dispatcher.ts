import type { Logger } from 'pino';
import { FINAL_BATCH_STATUSES, type WebhookEvent, type WebhookPayload } from '@photoenhance/contracts';
import type { JobEventHub, JobEvent } from '../job-events.js';
import type { JobService } from '../job-service.js';
import type { BatchService } from '../batches/batch-service.js';
import type { WebhookSpec } from './url-guard.js';
import type { WebhookDeliveries } from './deliveries.js';

/**
 * Turns queue events into webhook deliveries. Every gateway sees every event (BullMQ event streams are broadcast);
 * each delivery gets a deterministic id (`job.completed.<jobId>`, `batch.progress.<batchId>.<index>`, …) and BullMQ
 * refuses a second job with the same id, so one delivery is made per event however many gateways run.
 * Events that happen while no gateway runs are not replayed (documented limitation).
 */
export class WebhookDispatcher {
  private unsubscribe: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly deps: {
      hub: JobEventHub;
      jobs: JobService;
      batches: BatchService;
      deliveries: WebhookDeliveries;
      logger: Logger;
      engineNames: () => Promise<string[]>;
    },
  ) {}

  start(): void {
    this.unsubscribe = this.deps.hub.onAny((e) => {
      this.handle(e).catch((err: unknown) => this.deps.logger.warn({ err, jobId: e.jobId }, 'webhook dispatch failed'));
    });
    const watchAll = (): void => {
      this.deps.engineNames().then(
        (names) => {
          for (const n of names) this.deps.hub.watch(n);
        },
        () => undefined,
      );
    };
    watchAll();
    this.timer = setInterval(watchAll, 5000);
    this.timer.unref();
  }

  stop(): void {
    this.unsubscribe?.();
    if (this.timer) clearInterval(this.timer);
  }

  private async send(
    id: string,
    spec: WebhookSpec,
    event: WebhookEvent,
    body: Omit<WebhookPayload, 'id' | 'event' | 'createdAt'>,
  ): Promise<void> {
    if (!spec.events.includes(event)) return;
    await this.deps.deliveries.enqueue(id, spec.url, { id, event, createdAt: new Date().toISOString(), ...body });
  }

  private async handle(e: JobEvent): Promise<void> {
    if (e.type !== 'completed' && e.type !== 'failed' && e.type !== 'progress') return;
    const rec = await this.deps.jobs.records.get(e.jobId);
    if (!rec || rec.canceledAt) return;
    if (rec.webhook) {
      const spec = JSON.parse(rec.webhook) as WebhookSpec;
      if (e.type === 'progress') {
        const pct = Math.round(Math.max(0, Math.min(1, e.progress)) * 100);
        if (spec.events.includes('progress')) {
          const { view } = await this.deps.jobs.find(e.jobId);
          await this.send(`job.progress.${e.jobId}.${pct}`, spec, 'progress', { subject: 'job', job: { ...view, progress: pct / 100 } });
        }
      } else {
        // A failed attempt that will be retried is not the end of the job: only the final state is announced.
        const { view } = await this.deps.jobs.find(e.jobId);
        if (view.status === 'completed' || view.status === 'failed')
          await this.send(`job.${view.status}.${e.jobId}`, spec, view.status, { subject: 'job', job: view });
      }
    }
    if (rec.batchId && e.type !== 'progress') await this.batchItemFinished(rec.batchId, e.jobId);
  }

  private async batchItemFinished(batchId: string, jobId: string): Promise<void> {
    const { rec, items } = await this.deps.batches.record(batchId);
    if (!rec.webhook) return;
    const index = items.findIndex((i) => i.jobId === jobId);
    const states = await this.deps.batches.itemStates(rec, items);
    const item = states[index]?.view;
    if (!item || (item.status !== 'completed' && item.status !== 'failed')) return;
    const summary = this.deps.batches.summarize(rec, states);
    await this.send(`batch.progress.${batchId}.${index}`, rec.webhook, 'progress', { subject: 'batch', batch: summary, item });
    if ((FINAL_BATCH_STATUSES as readonly string[]).includes(summary.status) && summary.status !== 'canceled') {
      const event: WebhookEvent = summary.status === 'failed' ? 'failed' : 'completed';
      await this.send(`batch.${event}.${batchId}`, rec.webhook, event, { subject: 'batch', batch: summary });
    }
  }
}
