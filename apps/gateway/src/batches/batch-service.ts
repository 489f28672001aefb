import { randomBytes } from 'node:crypto';
import type { RedisConnection as Redis } from '@photoenhance/queue';
import {
  ApiError,
  BATCH_ID_PATTERN,
  batchLinks,
  decodeJobError,
  jobLinks,
  type BatchItemView,
  type BatchStatus,
  type BatchSummary,
  type BatchView,
  type JobError,
  type JobStatus,
} from '@photoenhance/contracts';
import { ENGINE_START_FIELDS, TOMBSTONE_SECONDS, bullKeys, engineStartOf, keys } from '@photoenhance/queue';
import type { GatewayConfig } from '../config.js';
import type { JobService } from '../job-service.js';
import type { WebhookSpec } from '../webhooks/url-guard.js';

/** What is stored per item (a JSON list entry). Items refused at submission carry their error and no job. */
export interface BatchItemRecord {
  name: string;
  resultName: string;
  jobId?: string;
  error?: JobError;
}

export interface BatchRecord {
  id: string;
  engine: string;
  options: BatchView['options'];
  createdAt: number;
  total: number;
  source: 'multipart' | 'archive' | 'compat';
  owner?: string;
  webhook?: WebhookSpec;
  canceledAt?: number;
}

export function newBatchId(): string {
  const bytes = randomBytes(20);
  let s = 'b_';
  for (const b of bytes) s += '0123456789abcdefghijklmnopqrstuvwxyz'[b % 36];
  return s;
}

export function checkBatchId(id: string): void {
  if (!BATCH_ID_PATTERN.test(id)) throw new ApiError('BATCH_NOT_FOUND', `No batch with id ${JSON.stringify(id.slice(0, 80))}`);
}

/** Unique result names inside one batch: `<stem>_enhanced.<ext>`, then `<stem>_enhanced (2).<ext>`, … */
export class ResultNames {
  private readonly used = new Set<string>();

  next(inputName: string, ext: string): string {
    const stem = (inputName.split('/').pop() ?? '').replace(/\.[^.]*$/, '') || 'photo';
    let candidate = `${stem}_enhanced.${ext}`;
    for (let n = 2; this.used.has(candidate.toLowerCase()); n++) candidate = `${stem}_enhanced (${n}).${ext}`;
    this.used.add(candidate.toLowerCase());
    return candidate;
  }
}

const FINAL_ITEM = new Set<JobStatus>(['completed', 'failed', 'canceled']);

export interface ItemState {
  view: BatchItemView;
  /** Where the result lies (completed items). */
  resultKey?: string;
  finishedOn?: number;
  processedOn?: number;
}

/** Batches in Redis: a hash and a list of items, expiring like job records; item states are read from the jobs. */
export class BatchService {
  private readonly ttl: number;

  constructor(
    private readonly redis: Redis,
    private readonly jobs: JobService,
    private readonly config: Readonly<GatewayConfig>,
  ) {
    this.ttl = config.jobTtlSeconds + TOMBSTONE_SECONDS;
  }

  async create(rec: BatchRecord, items: BatchItemRecord[]): Promise<void> {
    const h: Record<string, string> = {
      engine: rec.engine,
      options: JSON.stringify(rec.options),
      createdAt: String(rec.createdAt),
      total: String(rec.total),
      source: rec.source,
    };
    if (rec.owner) h.owner = rec.owner;
    if (rec.webhook) h.webhook = JSON.stringify(rec.webhook);
    const m = this.redis.multi().hset(keys.batch(rec.id), h).expire(keys.batch(rec.id), this.ttl);
    if (items.length) m.rpush(keys.batchItems(rec.id), ...items.map((i) => JSON.stringify(i))).expire(keys.batchItems(rec.id), this.ttl);
    // The index the dashboard lists batches from; entries older than the TTL are trimmed here, as batches expire.
    m.zadd(keys.batchIndex, rec.createdAt, rec.id).zremrangebyscore(keys.batchIndex, '-inf', rec.createdAt - this.ttl * 1000);
    await m.exec();
  }

  async record(id: string): Promise<{ rec: BatchRecord; items: BatchItemRecord[] }> {
    checkBatchId(id);
    const [h, list] = await Promise.all([this.redis.hgetall(keys.batch(id)), this.redis.lrange(keys.batchItems(id), 0, -1)]);
    if (!h.engine) throw new ApiError('BATCH_NOT_FOUND', `No batch with id ${id} (unknown, or expired with its jobs)`);
    const rec: BatchRecord = {
      id,
      engine: h.engine,
      options: JSON.parse(h.options ?? '{}') as BatchRecord['options'],
      createdAt: Number(h.createdAt),
      total: Number(h.total),
      source: (h.source ?? 'multipart') as BatchRecord['source'],
      ...(h.owner ? { owner: h.owner } : {}),
      ...(h.webhook ? { webhook: JSON.parse(h.webhook) as WebhookSpec } : {}),
      ...(h.canceledAt ? { canceledAt: Number(h.canceledAt) } : {}),
    };
    return { rec, items: list.map((s) => JSON.parse(s) as BatchItemRecord) };
  }

  /** Every item's state in two pipelined round trips, whatever the batch size. */
  async itemStates(rec: BatchRecord, items: BatchItemRecord[]): Promise<ItemState[]> {
    const bull = bullKeys(rec.engine);
    const p = this.redis.pipeline();
    for (const it of items) {
      if (!it.jobId) continue;
      p.hmget(
        bull.job(it.jobId),
        'finishedOn',
        'returnvalue',
        'failedReason',
        'progress',
        'processedOn',
        'timestamp',
        ...ENGINE_START_FIELDS,
      );
      p.lpos(bull.active, it.jobId);
      p.hmget(keys.record(it.jobId), 'canceledAt', 'expiredAt');
    }
    const res = (await p.exec()) ?? [];
    let r = 0;
    const publicUrl = this.config.publicUrl ?? '';
    return items.map((it, index): ItemState => {
      const common = { index, name: it.name, resultName: it.resultName };
      if (!it.jobId) return { view: { ...common, status: 'failed', progress: 0, ...(it.error ? { error: it.error } : {}) } };
      const [e1, job] = res[r++]!;
      const [e2, activePos] = res[r++]!;
      const [e3, recFields] = res[r++]!;
      if (e1 || e2 || e3) throw e1 ?? e2 ?? e3;
      const [finishedOn, returnvalue, failedReason, progress, processedOn, enqueuedAt, runOf, runAt] = job as Array<string | null>;
      const [canceledAt, expiredAt] = recFields as Array<string | null>;
      const withJob = { ...common, jobId: it.jobId, links: jobLinks(it.jobId, publicUrl) };
      const times = {
        ...(finishedOn ? { finishedOn: Number(finishedOn) } : {}),
        ...(processedOn ? { processedOn: Number(processedOn) } : {}),
      };
      if (canceledAt)
        return {
          view: { ...withJob, status: 'canceled', progress: 0, error: { code: 'JOB_CANCELED', message: 'canceled on request' } },
          ...times,
        };
      if (finishedOn && returnvalue) {
        let key: string | undefined;
        try {
          key = (JSON.parse(returnvalue) as { key?: string }).key;
        } catch {
          key = undefined;
        }
        return { view: { ...withJob, status: 'completed', progress: 1 }, ...(key ? { resultKey: key } : {}), ...times };
      }
      if (finishedOn) {
        const error = decodeJobError(failedReason) ?? { code: 'ENGINE_FAILED' as const, message: 'failed' };
        return { view: { ...withJob, status: 'failed', progress: 0, error }, ...times };
      }
      if (!enqueuedAt) {
        const message = expiredAt ? 'expired and deleted' : 'no longer in the queue';
        return { view: { ...withJob, status: 'failed', progress: 0, error: { code: 'JOB_EXPIRED', message } } };
      }
      // Active = at an engine; a prefetched job (BullMQ-active, not handed over yet) is still queued: engine-start.ts.
      if (activePos !== null && activePos !== undefined && engineStartOf(processedOn, runOf, runAt) !== undefined) {
        const p = Number(progress);
        return { view: { ...withJob, status: 'active', progress: Number.isFinite(p) ? Math.max(0, Math.min(1, p)) : 0 }, ...times };
      }
      return { view: { ...withJob, status: 'queued', progress: 0 }, ...times };
    });
  }

  summarize(rec: BatchRecord, states: ItemState[]): BatchSummary {
    const counts: BatchView['counts'] = { queued: 0, active: 0, completed: 0, failed: 0, canceled: 0 };
    let done = 0;
    let updated = rec.createdAt;
    let lastFinish = 0;
    for (const s of states) {
      counts[s.view.status]++;
      done += FINAL_ITEM.has(s.view.status) ? 1 : s.view.progress;
      updated = Math.max(updated, s.finishedOn ?? 0, s.processedOn ?? 0, rec.canceledAt ?? 0);
      lastFinish = Math.max(lastFinish, s.finishedOn ?? 0);
    }
    const unfinished = counts.queued + counts.active;
    let status: BatchStatus;
    if (rec.canceledAt && counts.canceled > 0) status = 'canceled';
    else if (unfinished > 0) status = unfinished === rec.total && counts.active === 0 ? 'queued' : 'running';
    else if (counts.completed === rec.total) status = 'completed';
    else if (counts.completed === 0) status = 'failed';
    else status = 'partial';
    const final = status !== 'queued' && status !== 'running';
    const finishedAt = final ? Math.max(lastFinish, rec.canceledAt ?? 0, rec.createdAt) : undefined;
    return {
      id: rec.id,
      status,
      total: rec.total,
      counts,
      progress: rec.total ? Math.round((done / rec.total) * 1000) / 1000 : 1,
      engine: rec.engine,
      options: rec.options,
      createdAt: new Date(rec.createdAt).toISOString(),
      updatedAt: new Date(updated).toISOString(),
      ...(finishedAt ? { finishedAt: new Date(finishedAt).toISOString() } : {}),
      ...(rec.canceledAt ? { canceledAt: new Date(rec.canceledAt).toISOString() } : {}),
      ...(rec.webhook ? { webhook: rec.webhook } : {}),
      links: batchLinks(rec.id, this.config.publicUrl ?? ''),
    };
  }

  async view(id: string): Promise<BatchView> {
    const { rec, items } = await this.record(id);
    const states = await this.itemStates(rec, items);
    return { ...this.summarize(rec, states), items: states.map((s) => s.view) };
  }

  /** Cancel what has not finished (each through JobService.cancel); finished results stay downloadable. */
  async cancel(id: string): Promise<BatchView> {
    const { rec, items } = await this.record(id);
    const states = await this.itemStates(rec, items);
    if (!rec.canceledAt) await this.redis.hset(keys.batch(id), 'canceledAt', String(Date.now()));
    for (const s of states) {
      if (s.view.jobId && (s.view.status === 'queued' || s.view.status === 'active')) {
        await this.jobs.cancel(s.view.jobId).catch((err: unknown) => {
          if (!(err instanceof ApiError)) throw err;
        });
      }
    }
    return this.view(id);
  }

  /** The batch a job belongs to, if any (from the job record). */
  async batchOf(jobId: string): Promise<string | undefined> {
    return (await this.redis.hget(keys.record(jobId), 'batchId')) ?? undefined;
  }
}
