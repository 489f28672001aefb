import type { Redis } from 'ioredis';
import { INSTANCES_KEY, KEY_PREFIX, queueName, type InstanceRecord } from '@photoenhance/queue';

/** Which worker process holds a job's lock now (from the lock token and the instance registry), if any. */
export async function lockHolder(
  redis: Redis,
  engine: string,
  jobId: string,
): Promise<{ token: string; pid: number | undefined } | undefined> {
  const token = await redis.get(`${KEY_PREFIX}:${queueName(engine)}:${jobId}:lock`);
  if (!token) return undefined;
  const workerId = token.slice(0, token.lastIndexOf(':'));
  const records = Object.values(await redis.hgetall(INSTANCES_KEY)).map((v) => JSON.parse(v) as InstanceRecord);
  const rec = records.find((r) => Object.values(r.workers).includes(workerId));
  return { token, pid: rec?.pid };
}

/**
 * How many times each job was finished, from the queue's event stream (BullMQ writes one `completed` event per
 * successful finish): more than 1 is a duplicated result.
 */
export async function completions(redis: Redis, engine: string): Promise<Map<string, number>> {
  const entries = (await redis.xrange(`${KEY_PREFIX}:${queueName(engine)}:events`, '-', '+')) as Array<[string, string[]]>;
  const out = new Map<string, number>();
  for (const [, fields] of entries) {
    const f: Record<string, string> = {};
    for (let i = 0; i + 1 < fields.length; i += 2) f[fields[i]!] = fields[i + 1]!;
    if (f.event === 'completed' && f.jobId) out.set(f.jobId, (out.get(f.jobId) ?? 0) + 1);
  }
  return out;
}
