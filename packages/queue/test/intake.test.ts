import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestRedis, type TestRedis } from '../../../test/support/redis.js';
import { JobRecords, KEY_PREFIX, TOMBSTONE_SECONDS, bullJobOptions, enqueueWithRecord, keys, queueName } from '../src/index.js';

const POLICY = { attempts: 3, backoffMs: 1000, ttlSeconds: 3600 };

describe('enqueueWithRecord (real redis-server)', () => {
  let server: TestRedis;
  let redis: Redis;
  let queue: Queue;
  let records: JobRecords;
  beforeAll(async () => {
    server = await startTestRedis();
    redis = server.client();
    queue = new Queue(queueName('t'), { connection: redis, prefix: KEY_PREFIX });
    records = new JobRecords(redis, POLICY.ttlSeconds);
  });
  afterAll(async () => {
    await queue?.close();
    await server?.close();
  });

  const job = (id: string, priority: 'normal' | 'high' = 'normal') => ({
    id,
    engine: 't',
    createdAt: 1_700_000_000_000,
    name: 'enhance',
    data: { id, n: 1 },
    opts: bullJobOptions(id, { priority } as never, POLICY),
    extra: { owner: 'alice' },
  });

  it('writes the record (with its expiry) and the BullMQ job, as records.create + queue.add did', async () => {
    await enqueueWithRecord(queue, records, job('j_a'));
    expect(await records.get('j_a')).toEqual({ engine: 't', createdAt: 1_700_000_000_000, owner: 'alice' });
    const ttl = await redis.ttl(keys.record('j_a'));
    expect(ttl).toBeGreaterThan(POLICY.ttlSeconds + TOMBSTONE_SECONDS - 60);
    expect(ttl).toBeLessThanOrEqual(POLICY.ttlSeconds + TOMBSTONE_SECONDS);
    const added = await queue.getJob('j_a');
    expect(added?.data).toEqual({ id: 'j_a', n: 1 });
    expect(added?.opts.attempts).toBe(3);
    expect(await queue.getJobState('j_a')).toBe('waiting');
    // Priorities go through BullMQ's own add script as well.
    await enqueueWithRecord(queue, records, job('j_b', 'high'));
    expect(await queue.getJobState('j_b')).toBe('prioritized');
  });

  it('is one MULTI/EXEC, written to the socket at once: HSET, EXPIRE and the add script with nothing in between', async () => {
    await enqueueWithRecord(queue, records, job('j_warm')); // scripts known to this connection from here on
    const dup = redis.duplicate();
    const monitor = await dup.monitor();
    const seen: string[] = [];
    monitor.on('monitor', (_time: string, args: string[]) => seen.push(String(args[0]).toLowerCase()));
    const stream = (redis as unknown as { stream: { write: (...a: unknown[]) => boolean } }).stream;
    const write = stream.write;
    let writes = 0;
    stream.write = (...a: unknown[]) => {
      writes++;
      return write.apply(stream, a);
    };
    try {
      await enqueueWithRecord(queue, records, job('j_c'));
    } finally {
      stream.write = write;
    }
    await redis.ping();
    // MONITOR shows the transaction's commands in order once EXEC runs (the script's own calls follow EVALSHA).
    await expect.poll(() => seen.includes('ping'), { timeout: 5000 }).toBe(true);
    monitor.disconnect();
    dup.disconnect();
    const at = seen.indexOf('multi');
    expect(seen.slice(at, at + 4)).toEqual(['multi', 'hset', 'expire', 'evalsha']);
    expect(seen.indexOf('exec', at)).toBeGreaterThan(at);
    expect(writes).toBe(1);
  });

  it('refuses options whose jobId is not the job id before writing anything', async () => {
    await expect(enqueueWithRecord(queue, records, { ...job('j_d'), opts: { jobId: 'other' } })).rejects.toThrow(/must be the job id/);
    expect(await redis.exists(keys.record('j_d'))).toBe(0);
  });
});
