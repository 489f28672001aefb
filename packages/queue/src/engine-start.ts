import type { RedisConnection as Redis } from './redis.js';
import { keys } from './names.js';

/**
 * When an attempt reached its engine. BullMQ calls a job "active" the moment a worker fetches it, and a prefetching
 * worker fetches the next job before its engine is free; the public status (statusOfBullState in
 * @photoenhance/contracts) calls such a job queued until the worker writes this mark on handing it to the engine.
 *
 * The mark lives in BullMQ's job hash: `peRunOf` = the attempt's `processedOn` (set by BullMQ on every fetch) and
 * `peRunAt` = when the engine got it. It counts only while `peRunOf` equals the current `processedOn`, so a mark left by
 * an earlier attempt (retry, stalled job, host holding) never makes a later, merely prefetched fetch look started.
 * With the mark goes a `started` event on the queue's event stream, which live views follow instead of BullMQ's
 * `active` (that one says "fetched").
 */
export const ENGINE_START_EVENT = 'started';
const RUN_OF = 'peRunOf';
const RUN_AT = 'peRunAt';
/** The job hash fields of the mark, for readers that read the hash themselves (pass them to engineStartOf). */
export const ENGINE_START_FIELDS = [RUN_OF, RUN_AT] as const;
/** As BullMQ trims its event stream (streams.events.maxLen default). */
const EVENTS_MAX_LEN = 10_000;

function jobKey(engine: string, jobId: string): string {
  return `${keys.queueBase(engine)}:${jobId}`;
}

/** The worker hands an attempt (fetched at `processedOn`) to the engine: one round trip, hash mark + event. */
export async function markEngineStart(redis: Redis, engine: string, jobId: string, processedOn: number, at = Date.now()): Promise<void> {
  await redis
    .multi()
    .hset(jobKey(engine, jobId), RUN_OF, String(processedOn), RUN_AT, String(at))
    .xadd(keys.queueEvents(engine), 'MAXLEN', '~', String(EVENTS_MAX_LEN), '*', 'event', ENGINE_START_EVENT, 'jobId', jobId)
    .exec();
}

/** The start time of an attempt from the job hash's fields, or undefined while it has not reached an engine. */
export function engineStartOf(
  processedOn: string | number | null | undefined,
  runOf: string | null | undefined,
  runAt: string | null | undefined,
): number | undefined {
  if (processedOn === null || processedOn === undefined || !runOf || !runAt) return undefined;
  return String(processedOn) === runOf ? Number(runAt) : undefined;
}

/** When each job's current attempt reached its engine (undefined: not yet, or unknown job), in one round trip. */
export async function engineStarts(redis: Redis, engine: string, jobIds: readonly string[]): Promise<Array<number | undefined>> {
  if (jobIds.length === 0) return [];
  const p = redis.pipeline();
  for (const id of jobIds) p.hmget(jobKey(engine, id), 'processedOn', RUN_OF, RUN_AT);
  const res = (await p.exec()) ?? [];
  return jobIds.map((_, i) => {
    const [err, v] = res[i] ?? [];
    if (err || !Array.isArray(v)) return undefined;
    const [processedOn, runOf, runAt] = v as Array<string | null>;
    return engineStartOf(processedOn, runOf, runAt);
  });
}

/** Ids of an engine queue's BullMQ-active jobs not yet at an engine (fetched ahead by a prefetching worker). */
const PREFETCHED_LUA = `
local ids = redis.call('LRANGE', KEYS[1], 0, -1)
local out = {}
for _, id in ipairs(ids) do
  local f = redis.call('HMGET', ARGV[1] .. id, 'processedOn', '${RUN_OF}')
  if not f[2] or f[1] ~= f[2] then out[#out + 1] = id end
end
return out`;

export async function prefetchedJobs(redis: Redis, engine: string): Promise<string[]> {
  const base = keys.queueBase(engine);
  // The active list is short: at most the fetch concurrency of every host together.
  return (await redis.eval(PREFETCHED_LUA, 1, `${base}:active`, `${base}:`)) as string[];
}

/**
 * BullMQ job counts as the public statuses see them: prefetched jobs (BullMQ "active", not at an engine) move from
 * `active` to `waiting`. Every count the API, dashboard and /metrics show goes through this.
 */
export async function publicJobCounts<C extends { active?: number; waiting?: number }>(
  redis: Redis,
  engine: string,
  counts: C,
): Promise<C> {
  if (!counts.active) return counts;
  const n = Math.min(counts.active, (await prefetchedJobs(redis, engine)).length);
  if (n === 0) return counts;
  return { ...counts, active: counts.active - n, waiting: (counts.waiting ?? 0) + n };
}
