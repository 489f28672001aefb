import type { RedisConnection as Redis } from './redis.js';
import { keys } from './names.js';

/**
 * A small hash per job, independent of BullMQ's job hash: it says which queue the job is in, and keeps tombstones
 * (canceled, expired) after BullMQ forgets the job, so the API can answer 410 instead of 404.
 */
export interface JobRecord {
  engine: string;
  createdAt: number;
  canceledAt?: number;
  expiredAt?: number;
  /** JSON of the JobView at cancel time, so GET still describes a canceled job. */
  snapshot?: string;
  /** The batch this job belongs to, if any. */
  batchId?: string;
  /** Who submitted it (API key id) when keys are in use. */
  owner?: string;
  /** JSON {url, events} when the job has its own webhook. */
  webhook?: string;
}

/** Extra fields a job record may carry from creation. */
export type JobRecordExtra = Partial<Pick<JobRecord, 'batchId' | 'owner' | 'webhook'>>;

/** Tombstones outlive the job by this much. */
export const TOMBSTONE_SECONDS = 7 * 24 * 3600;

export class JobRecords {
  constructor(
    private readonly redis: Redis,
    private readonly ttlSeconds: number,
  ) {}

  /** The record's key, fields and lifetime; create() writes them, as does enqueueWithRecord() (intake.ts) with the job. */
  newRecord(
    id: string,
    engine: string,
    createdAt: number,
    extra: JobRecordExtra = {},
  ): { key: string; fields: Record<string, string>; expireSeconds: number } {
    const fields: Record<string, string> = { engine, createdAt: String(createdAt) };
    for (const [name, v] of Object.entries(extra)) if (typeof v === 'string') fields[name] = v;
    return { key: keys.record(id), fields, expireSeconds: this.ttlSeconds + TOMBSTONE_SECONDS };
  }

  async create(id: string, engine: string, createdAt: number, extra: JobRecordExtra = {}): Promise<void> {
    const r = this.newRecord(id, engine, createdAt, extra);
    await this.redis.multi().hset(r.key, r.fields).expire(r.key, r.expireSeconds).exec();
  }

  async get(id: string): Promise<JobRecord | undefined> {
    const h = await this.redis.hgetall(keys.record(id));
    if (!h.engine) return undefined;
    return {
      engine: h.engine,
      createdAt: Number(h.createdAt),
      ...(h.canceledAt ? { canceledAt: Number(h.canceledAt) } : {}),
      ...(h.expiredAt ? { expiredAt: Number(h.expiredAt) } : {}),
      ...(h.snapshot ? { snapshot: h.snapshot } : {}),
      ...(h.batchId ? { batchId: h.batchId } : {}),
      ...(h.owner ? { owner: h.owner } : {}),
      ...(h.webhook ? { webhook: h.webhook } : {}),
    };
  }

  async markCanceled(id: string, snapshot: string): Promise<void> {
    const k = keys.record(id);
    await this.redis
      .multi()
      .hset(k, { canceledAt: String(Date.now()), snapshot })
      .expire(k, TOMBSTONE_SECONDS)
      .exec();
  }

  async markExpired(id: string): Promise<void> {
    const k = keys.record(id);
    // Only for jobs we know; never resurrect a record.
    const exists = await this.redis.exists(k);
    if (exists)
      await this.redis
        .multi()
        .hset(k, { expiredAt: String(Date.now()) })
        .expire(k, TOMBSTONE_SECONDS)
        .exec();
  }

  async isCanceled(id: string): Promise<boolean> {
    return (await this.redis.hexists(keys.record(id), 'canceledAt')) === 1;
  }
}
