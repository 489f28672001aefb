import { Job, type JobsOptions, type Queue } from 'bullmq';
import type { ChainableCommander } from 'ioredis';
import type { JobRecords, JobRecordExtra } from './records.js';

export interface RecordedJob<T> {
  id: string;
  engine: string;
  createdAt: number;
  /** The BullMQ job name. */
  name: string;
  data: T;
  /** Must carry jobId = id (bullJobOptions does). */
  opts: JobsOptions;
  extra?: JobRecordExtra;
}

/**
 * Write a job's record and add the job to its BullMQ queue in one MULTI/EXEC: one round trip at intake instead of
 * two, and atomic, so no job exists without its record and no record (it expires anyway) without its job, whatever
 * dies in between. BullMQ's own add script runs inside the transaction (as Queue.addBulk runs it in a pipeline); the
 * queue's default job options are not merged in (ours sets none). Every key shares the `{pe}` hash tag, so this holds
 * on a Redis Cluster too. Throws what Redis or the add script answered.
 */
export async function enqueueWithRecord<T>(queue: Queue, records: JobRecords, job: RecordedJob<T>): Promise<void> {
  if (job.opts.jobId !== job.id) throw new Error(`enqueueWithRecord: opts.jobId (${String(job.opts.jobId)}) must be the job id ${job.id}`);
  const client = await queue.client;
  const rec = records.newRecord(job.id, job.engine, job.createdAt, job.extra);
  const multi = client.multi();
  // BullMQ's transaction type lists only what BullMQ uses; over ioredis it is an ioredis MULTI pipeline.
  (multi as unknown as ChainableCommander).hset(rec.key, rec.fields).expire(rec.key, rec.expireSeconds);
  // Queues the add script's EVALSHA on the transaction; its promise settles with the transaction, not the answer.
  void new Job(queue, job.name, job.data, job.opts, job.id).addJob(multi, {}).catch(() => undefined);
  const replies = await multi.exec();
  if (!replies) throw new Error(`the transaction adding job ${job.id} was discarded`);
  for (const [err] of replies) if (err) throw err;
  const added = replies[2]?.[1];
  if (typeof added === 'number' && added < 0) throw new Error(`BullMQ refused job ${job.id} (add script code ${added})`);
}
