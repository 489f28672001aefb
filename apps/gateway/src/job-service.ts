import { randomBytes } from 'node:crypto';
import { Queue, type Job } from 'bullmq';
import type { RedisConnection as Redis } from '@photoenhance/queue';
import {
  ApiError,
  decodeJobError,
  jobLinks,
  type JobData,
  type JobResult,
  type JobStatus,
  type JobView,
  statusOfBullState,
} from '@photoenhance/contracts';
import {
  JobRecords,
  KEY_PREFIX,
  ReplicaWait,
  bullJobOptions,
  engineStarts,
  enqueueWithRecord,
  keys,
  queueName,
  type JobRecordExtra,
} from '@photoenhance/queue';
import type { Storage } from '@photoenhance/storage';
import type { GatewayConfig } from './config.js';

const ID_ALPHABET = '0123456789abcdefghijklmnopqrstuvwxyz';

export function newJobId(): string {
  const bytes = randomBytes(20);
  let s = 'j_';
  for (const b of bytes) s += ID_ALPHABET[b % 36];
  return s;
}

const iso = (ms: number | undefined): string | undefined => (ms ? new Date(ms).toISOString() : undefined);

/** Jobs as the API sees them: one BullMQ queue per engine, plus a small record per job for lookups and tombstones. */
export class JobService {
  private readonly queues = new Map<string, Queue>();
  readonly records: JobRecords;
  private readonly replicas: ReplicaWait;

  constructor(
    private readonly redis: Redis,
    private readonly storage: Storage,
    private readonly config: Readonly<GatewayConfig>,
  ) {
    this.records = new JobRecords(redis, config.jobTtlSeconds);
    this.replicas = new ReplicaWait(redis, { replicas: config.redisWaitReplicas, timeoutMs: config.redisWaitTimeoutMs });
  }

  queue(engine: string): Queue {
    let q = this.queues.get(engine);
    if (!q) {
      q = new Queue(queueName(engine), { connection: this.redis, prefix: KEY_PREFIX });
      // Errors surface on the calls themselves; this keeps an unhandled 'error' event from crashing the process.
      q.on('error', () => undefined);
      this.queues.set(engine, q);
    }
    return q;
  }

  knownQueues(): Queue[] {
    return [...this.queues.values()];
  }

  async enqueue(data: JobData, extra: JobRecordExtra = {}): Promise<void> {
    // The record and the job in one round trip, atomically (packages/queue intake.ts).
    await enqueueWithRecord(this.queue(data.engine), this.records, {
      id: data.id,
      engine: data.engine,
      createdAt: data.createdAt,
      extra,
      name: 'enhance',
      data,
      opts: bullJobOptions(data.id, data.options, {
        attempts: this.config.jobAttempts,
        backoffMs: this.config.jobBackoffMs,
        ttlSeconds: this.config.jobTtlSeconds,
      }),
    });
    await this.confirmDurable(data);
  }

  /**
   * A 202 must survive a Redis failover: wait until a replica holds the job (WAIT, when the master has replicas).
   * When none confirms in time the job is withdrawn (canceled: a worker may already have taken it) and the client is
   * told to retry, rather than promised a job that a failover could lose.
   */
  private async confirmDurable(data: JobData): Promise<void> {
    const r = await this.replicas.confirm();
    if (r.ok) return;
    await this.cancel(data.id).catch(() => undefined);
    throw new ApiError(
      'NOT_REPLICATED',
      `${r.acked} of ${r.needed} Redis replica(s) confirmed the job within ${this.config.redisWaitTimeoutMs} ms`,
      {
        headers: { 'retry-after': '2' },
        extensions: { replicasNeeded: r.needed, replicasAcked: r.acked },
      },
    );
  }

  /** The job, or an ApiError (404 unknown, 410 expired). Canceled jobs come back from their tombstone. */
  async find(id: string): Promise<{ view: JobView; job?: Job<JobData, JobResult> }> {
    const rec = await this.records.get(id);
    if (!rec) throw new ApiError('JOB_NOT_FOUND', `No job with id ${id}`);
    if (rec.canceledAt && rec.snapshot) {
      const job = await this.queue(rec.engine).getJob(id);
      return { view: JSON.parse(rec.snapshot) as JobView, ...(job ? { job: job as Job<JobData, JobResult> } : {}) };
    }
    if (rec.expiredAt) throw new ApiError('JOB_EXPIRED', `Job ${id} has expired and its files were deleted`);
    // State first, then the job: read the other way round, a job finishing in between would look completed without
    // its result. This way the job data is never older than the state.
    const state = await this.queue(rec.engine).getJobState(id);
    // Started = handed to an engine (a prefetched job is BullMQ-active but still queued): engine-start.ts. Read with
    // the job, in parallel.
    const ran = state === 'active' || state === 'completed' || state === 'failed';
    const [found, [engineAt]] = await Promise.all([
      this.queue(rec.engine).getJob(id),
      ran ? engineStarts(this.redis, rec.engine, [id]) : [undefined],
    ]);
    const job = found as Job<JobData, JobResult> | undefined;
    if (!job) throw new ApiError('JOB_EXPIRED', `Job ${id} has expired and its files were deleted`);
    if (state !== 'active') return { view: this.toView(job, statusOfBullState(state), engineAt), job };
    return { view: this.toView(job, statusOfBullState(state, engineAt !== undefined), engineAt ?? null), job };
  }

  /**
   * `engineAt`: when the attempt reached its engine (engine-start.ts); null: fetched but not at an engine yet (not
   * started); undefined: not known (finished jobs, jobs marked before the mark existed), processedOn stands in.
   */
  toView(job: Job<JobData, JobResult>, status: JobStatus, engineAt?: number | null): JobView {
    const d = job.data;
    const links = jobLinks(d.id, this.config.publicUrl ?? '');
    const rv = job.returnvalue as JobResult | null | undefined;
    const started = engineAt === null ? undefined : (engineAt ?? job.processedOn ?? undefined);
    const finished = status === 'completed' || status === 'failed' ? (job.finishedOn ?? undefined) : undefined;
    const progress = status === 'completed' ? 1 : typeof job.progress === 'number' ? Math.max(0, Math.min(1, job.progress)) : 0;
    const view: JobView = {
      id: d.id,
      status,
      progress,
      engine: d.engine,
      options: d.options,
      input: { width: d.input.width, height: d.input.height, format: d.input.format, bytes: d.input.bytes, name: d.input.name },
      attempts: job.attemptsStarted ?? job.attemptsMade,
      createdAt: new Date(d.createdAt).toISOString(),
      links,
    };
    if (started) view.startedAt = iso(started);
    if (finished) view.finishedAt = iso(finished);
    if (started)
      view.timings = { queuedMs: Math.max(0, started - d.createdAt), ...(finished ? { runMs: Math.max(0, finished - started) } : {}) };
    if (status === 'completed' && rv) {
      view.result = {
        width: rv.width,
        height: rv.height,
        format: rv.format,
        bytes: rv.bytes,
        url: links.result,
        applied: rv.applied,
        ...(rv.meta ? { meta: rv.meta } : {}),
      };
    }
    if (status === 'failed') view.error = decodeJobError(job.failedReason);
    else if (job.failedReason && status === 'queued') view.lastError = decodeJobError(job.failedReason);
    return view;
  }

  /**
   * Cancel: a queued job is removed; an active one is told to stop (its worker aborts the engine run);
   * a finished one has its files deleted. Idempotent; always deletes the job's stored files.
   */
  async cancel(id: string): Promise<JobView> {
    const { view, job } = await this.find(id);
    if (view.status === 'canceled') {
      await this.storage.removeJob(id);
      return view;
    }
    const canceled: JobView = { ...view, status: 'canceled', finishedAt: new Date().toISOString() };
    if (job && (view.status === 'queued' || view.status === 'active')) {
      // Tombstone first, so a worker that picks the job up in between sees it is canceled.
      await this.records.markCanceled(id, JSON.stringify(canceled));
      try {
        await job.remove();
      } catch {
        // Locked by a worker: it is active now. Ask its worker to stop it.
        await this.redis.publish(keys.cancelChannel, id);
      }
      await this.storage.removeJob(id);
      return canceled;
    }
    // Completed or failed: delete the job and its files; later lookups answer 410.
    if (job) await job.remove().catch(() => undefined);
    await this.records.markExpired(id);
    await this.storage.removeJob(id);
    return { ...view };
  }

  async close(): Promise<void> {
    await Promise.all([...this.queues.values()].map((q) => q.close().catch(() => undefined)));
  }
}
