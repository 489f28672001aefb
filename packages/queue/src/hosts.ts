import type { Redis } from 'ioredis';
import type { HostState } from '@photoenhance/contracts';
import { keys } from './names.js';

/** Worker hosts publish their state with an expiry; a host that stops publishing disappears by itself. */
export async function publishHost(redis: Redis, state: HostState, ttlMs: number): Promise<void> {
  await redis.set(keys.host(state.hostId), JSON.stringify(state), 'PX', ttlMs);
}

export async function removeHost(redis: Redis, hostId: string): Promise<void> {
  await redis.del(keys.host(hostId));
}

export async function listHosts(redis: Redis): Promise<HostState[]> {
  const found: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', keys.hostPattern, 'COUNT', 100);
    cursor = next;
    found.push(...batch);
  } while (cursor !== '0');
  if (found.length === 0) return [];
  const values = await redis.mget(found);
  return values
    .filter((v): v is string => typeof v === 'string')
    .map((v) => JSON.parse(v) as HostState)
    .sort((a, b) => a.hostId.localeCompare(b.hostId));
}
