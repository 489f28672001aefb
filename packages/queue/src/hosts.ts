import type { RedisConnection as Redis } from './redis.js';
import type { HostState } from '@photoenhance/contracts';
import { keys } from './names.js';

/**
 * Worker hosts publish their state with an expiry; a host that stops publishing disappears by itself.
 * An index (sorted set, score = expiry) lists them without scanning the keyspace, which holds every job's keys.
 */
export async function publishHost(redis: Redis, state: HostState, ttlMs: number): Promise<void> {
  const now = Date.now();
  const m = redis
    .multi()
    .set(keys.host(state.hostId), JSON.stringify(state), 'PX', ttlMs)
    .zadd(keys.hostIndex, now + ttlMs, state.hostId)
    .zremrangebyscore(keys.hostIndex, '-inf', now);
  if (state.engines.length) m.sadd(keys.offeredEngines, ...state.engines.map((e) => e.name));
  await m.exec();
}

/** Every engine name a worker host has offered in this deployment, live or not (keys.offeredEngines). */
export async function offeredEngines(redis: Redis): Promise<string[]> {
  return redis.smembers(keys.offeredEngines);
}

export async function removeHost(redis: Redis, hostId: string): Promise<void> {
  await redis.multi().del(keys.host(hostId)).zrem(keys.hostIndex, hostId).exec();
}

export async function listHosts(redis: Redis): Promise<HostState[]> {
  const ids = await redis.zrangebyscore(keys.hostIndex, Date.now(), '+inf');
  if (ids.length === 0) return [];
  const values = await redis.mget(ids.map((id) => keys.host(id)));
  return values
    .filter((v): v is string => typeof v === 'string')
    .map((v) => JSON.parse(v) as HostState)
    .sort((a, b) => a.hostId.localeCompare(b.hostId));
}
