import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { startTestRedis, type TestRedis } from '../../../test/support/redis.js';
import {
  deadInstances,
  describeInstance,
  INSTANCES_KEY,
  instanceId,
  keys,
  reclaimLock,
  registerInstance,
  releaseLocks,
  type InstanceRecord,
  type QueueKeys,
} from '../src/index.js';

const Q: QueueKeys = {
  active: 'pe:enhance.t:active',
  stalled: 'pe:enhance.t:stalled',
  stalledCheck: 'pe:enhance.t:stalled-check',
  jobPrefix: 'pe:enhance.t:',
};

async function deadPid(): Promise<number> {
  const p = spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' });
  await new Promise((r) => p.once('exit', r));
  return p.pid!;
}

describe('recovery registry and lock scripts (real redis-server)', () => {
  let server: TestRedis;
  let redis: Redis;
  beforeAll(async () => {
    server = await startTestRedis();
    redis = server.client();
  });
  afterAll(async () => server?.close());

  it('tells dead instances from live ones: process gone here, heartbeat expired elsewhere; never a live one', async () => {
    await redis.del(INSTANCES_KEY);
    const self = describeInstance({ hostId: 'self', startedAt: 1, workers: { q: 'w-self' }, ttlMs: 3000 });
    const old = Date.now() - 60_000;
    const here = (over: Partial<InstanceRecord>): InstanceRecord => ({ ...self, seenAt: old, ...over });
    const gone = here({ hostId: 'gone', pid: await deadPid(), workers: { q: 'w-gone' } });
    const frozenElsewhere = here({ hostId: 'far', hostname: 'elsewhere', pid: 7, workers: { q: 'w-far' } });
    const liveElsewhere = here({ hostId: 'ok', hostname: 'elsewhere', pid: 8, startedAt: 5, workers: { q: 'w-ok' } });
    // Same HOST_ID given to two processes: the other one publishes the heartbeat, but this one's record is fresh.
    const twin = here({ hostId: 'ok', hostname: 'elsewhere', pid: 9, seenAt: Date.now(), workers: { q: 'w-twin' } });
    for (const r of [self, gone, frozenElsewhere, liveElsewhere, twin]) await redis.hset(INSTANCES_KEY, instanceId(r), JSON.stringify(r));
    await redis.set(keys.host('ok'), JSON.stringify({ hostId: 'ok', pid: 8, startedAt: 5 }), 'PX', 10_000);
    const dead = await deadInstances(redis, self);
    expect(dead.map((d) => d.record.hostId).sort()).toEqual(['far', 'gone']);
    expect(dead.find((d) => d.record.hostId === 'gone')!.why).toMatch(/process \d+ on this machine is gone/);
    expect(dead.find((d) => d.record.hostId === 'far')!.why).toMatch(/heartbeat \(host far\) expired/);
    // registerInstance refreshes seenAt.
    await registerInstance(redis, { ...frozenElsewhere, seenAt: 0 });
    expect(JSON.parse((await redis.hget(INSTANCES_KEY, instanceId(frozenElsewhere)))!).seenAt).toBeGreaterThan(Date.now() - 5_000);
  });

  it("releaseLocks deletes only the dead worker's locks and marks those jobs for the stalled check", async () => {
    await redis.del(Q.active, Q.stalled);
    await redis.rpush(Q.active, 'j1', 'j2', 'j3');
    await redis.set(`${Q.jobPrefix}j1:lock`, 'dead-w:0');
    await redis.set(`${Q.jobPrefix}j2:lock`, 'live-w:3');
    await redis.set(`${Q.jobPrefix}j3:lock`, 'dead-w-2:1'); // a prefix of another id must not match
    await redis.set(Q.stalledCheck, '1');
    expect(await releaseLocks(redis, Q, ['dead-w'])).toEqual(['j1']);
    expect(await redis.exists(`${Q.jobPrefix}j1:lock`)).toBe(0);
    expect(await redis.get(`${Q.jobPrefix}j2:lock`)).toBe('live-w:3');
    expect(await redis.get(`${Q.jobPrefix}j3:lock`)).toBe('dead-w-2:1');
    expect(await redis.smembers(Q.stalled)).toEqual(['j1']);
    expect(await redis.exists(Q.stalledCheck)).toBe(0);
  });

  it("reclaimLock keeps our lock, takes back an expired one while the job is active, never another worker's", async () => {
    await redis.del(Q.active, Q.stalled);
    await redis.rpush(Q.active, 'a', 'b');
    await redis.sadd(Q.stalled, 'a');
    // Ours: extended.
    await redis.set(`${Q.jobPrefix}a:lock`, 'me:1', 'PX', 100);
    expect(await reclaimLock(redis, Q, 'a', 'me:1', 5000)).toBe(true);
    expect(await redis.pttl(`${Q.jobPrefix}a:lock`)).toBeGreaterThan(1000);
    expect(await redis.sismember(Q.stalled, 'a')).toBe(0);
    // Expired while active: ours again.
    await redis.del(`${Q.jobPrefix}b:lock`);
    expect(await reclaimLock(redis, Q, 'b', 'me:2', 5000)).toBe(true);
    expect(await redis.get(`${Q.jobPrefix}b:lock`)).toBe('me:2');
    // Another worker's: not ours.
    await redis.set(`${Q.jobPrefix}b:lock`, 'other:7');
    expect(await reclaimLock(redis, Q, 'b', 'me:2', 5000)).toBe(false);
    expect(await redis.get(`${Q.jobPrefix}b:lock`)).toBe('other:7');
    // Moved back to wait by a stalled check: not ours.
    expect(await reclaimLock(redis, Q, 'c', 'me:3', 5000)).toBe(false);
    expect(await redis.exists(`${Q.jobPrefix}c:lock`)).toBe(0);
  });
});
