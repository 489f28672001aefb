import type { JobsOptions } from 'bullmq';
import type { JobOptions } from '@photoenhance/contracts';

/**
 * All our keys live under this prefix (BullMQ's and our own). The braces are a Redis Cluster hash tag: only "pe" is
 * hashed, so every key of the project lives in one slot and every MULTI, pipeline, Lua script and multi-key command
 * (BullMQ's included) stays valid on a cluster. One node, Sentinel and Cluster use the same names.
 */
export const KEY_PREFIX = '{pe}';

/** One BullMQ queue per engine, so a host only takes jobs for the engines it runs. */
export function queueName(engine: string): string {
  return `enhance.${engine}`;
}

export const keys = {
  /** Hash per job: engine, createdAt, canceled/expired tombstones. Lives as long as the job (+ a grace for 410s). */
  record: (id: string): string => `${KEY_PREFIX}:rec:${id}`,
  /** Pub/sub channel: job ids whose active run must stop. */
  cancelChannel: `${KEY_PREFIX}:cancel`,
  /** Pub/sub channel: operator commands for worker hosts (JSON ControlMessage). */
  controlChannel: `${KEY_PREFIX}:control`,
  /** Per worker host heartbeat (JSON), with an expiry so a dead host disappears by itself. */
  host: (hostId: string): string => `${KEY_PREFIX}:host:${hostId}`,
  /** Sorted set of live hosts (score: when the heartbeat expires), so listing them never scans the keyspace. */
  hostIndex: `${KEY_PREFIX}:hosts`,
  /**
   * Set of every engine name a worker host has offered in this deployment (no expiry): an engine whose hosts are all
   * away for a moment (a heartbeat lapsed, a restart) is still known, so a submission gets 503 NO_WORKER_FOR_ENGINE with
   * Retry-After, not 400 UNKNOWN_ENGINE.
   */
  offeredEngines: `${KEY_PREFIX}:engines`,
  /** Batch record (hash: engine, options, total, owner, webhook, canceledAt) and its items (list of JSON), expiring with the jobs. */
  batch: (id: string): string => `${KEY_PREFIX}:batch:${id}`,
  batchItems: (id: string): string => `${KEY_PREFIX}:batch:${id}:items`,
  /** Sorted set of batch ids by creation time (newest last), trimmed as batches expire. */
  batchIndex: `${KEY_PREFIX}:batches`,
  /** Sorted set (score: createdAt) of compat task ids per owner, for GET /api/v1/tasks. */
  compatTasks: (owner: string): string => `${KEY_PREFIX}:compat:tasks:${owner}`,
  /** Sweeper lock, so one gateway sweeps at a time. */
  sweepLock: `${KEY_PREFIX}:lock:sweep`,
  /** BullMQ's own keys of an engine queue start with this; bullKeys() names the ones we read. */
  queueBase: (engine: string): string => `${KEY_PREFIX}:${queueName(engine)}`,
  /** BullMQ event stream of an engine queue. */
  queueEvents: (engine: string): string => bullKeys(engine).events,
  /** Idempotency claim per (client, key) digest. */
  idempotency: (digest: string): string => `${KEY_PREFIX}:idem:${digest}`,
  /** Marks a finished job as counted by one gateway's metrics. */
  metricsCounted: (jobId: string, finishedOn: number | string): string => `${KEY_PREFIX}:metrics:counted:${jobId}:${finishedOn}`,
  /** Key prefix of the rate limiter's counters. */
  rateLimitNamespace: `${KEY_PREFIX}:rl:`,
};

/**
 * BullMQ's internal keys of one engine queue, for the few reads its API has no cheap call for (pipelined counts over
 * every engine, LPOS on the active list). BullMQ's layout is spelled here and nowhere else.
 */
export interface BullQueueKeys {
  /** List: jobs waiting (FIFO). */
  wait: string;
  /** List: jobs waiting while the queue is paused. */
  paused: string;
  /** Sorted set: waiting jobs with a priority. */
  prioritized: string;
  /** Sorted set: jobs waiting for a retry backoff or a delay. */
  delayed: string;
  /** List: jobs a worker holds. */
  active: string;
  /** Sorted sets scored by finishedOn (ms). */
  completed: string;
  failed: string;
  /** Stream of the queue's events. */
  events: string;
  /** Hash of one job. */
  job: (id: string) => string;
}

export function bullKeys(engine: string): BullQueueKeys {
  const base = `${KEY_PREFIX}:${queueName(engine)}`;
  return {
    wait: `${base}:wait`,
    paused: `${base}:paused`,
    prioritized: `${base}:prioritized`,
    delayed: `${base}:delayed`,
    active: `${base}:active`,
    completed: `${base}:completed`,
    failed: `${base}:failed`,
    events: `${base}:events`,
    job: (id) => `${base}:${id}`,
  };
}

export const PRIORITY_VALUES: Record<JobOptions['priority'], number | undefined> = { high: 1, normal: undefined, low: 10 };

export interface RetryPolicy {
  attempts: number;
  backoffMs: number;
  ttlSeconds: number;
}

export function bullJobOptions(id: string, options: JobOptions, policy: RetryPolicy): JobsOptions {
  const priority = PRIORITY_VALUES[options.priority];
  return {
    jobId: id,
    attempts: policy.attempts,
    backoff: { type: 'exponential', delay: policy.backoffMs },
    removeOnComplete: { age: policy.ttlSeconds },
    removeOnFail: { age: policy.ttlSeconds },
    ...(priority !== undefined ? { priority } : {}),
  };
}
