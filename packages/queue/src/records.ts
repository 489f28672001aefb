import type { Redis } from 'ioredis';
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
}

/** Tombstones outlive the job by this much. */
export const TOMBSTONE_SECONDS = 7 * 24 * 3600;

export class JobRecords {
  constructor(
    private readonly redis: Redis,
    private readonly ttlSeconds: number,
  ) {}

  async create(id: string, engine: string, createdAt: number): Promise<void> {
    const k = keys.record(id);
    await this.redis.multi().hset(k, { engine, createdAt: String(createdAt) }).expire(k, this.ttlSeconds + TOMBSTONE_SECONDS).exec();
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
    };
  }

  async markCanceled(id: string, snapshot: string): Promise<void> {
    const k = keys.record(id);
    await this.redis.multi().hset(k, { canceledAt: String(Date.now()), snapshot }).expire(k, TOMBSTONE_SECONDS).exec();
  }

  async markExpired(id: string): Promise<void> {
    const k = keys.record(id);
    // Only for jobs we know; never resurrect a record.
    const exists = await this.redis.exists(k);
    if (exists) await this.redis.multi().hset(k, { expiredAt: String(Date.now()) }).expire(k, TOMBSTONE_SECONDS).exec();
  }

  async isCanceled(id: string): Promise<boolean> {
    return (await this.redis.hexists(keys.record(id), 'canceledAt')) === 1;
  }
}
