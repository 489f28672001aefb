import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseControlMessage } from '@photoenhance/contracts';
import { keys } from '@photoenhance/queue';
import { startTestRedis, type TestRedis } from './support/redis.js';
import { startWorker, type RunningWorker } from './support/stack.js';

/**
 * Operator commands arrive over Redis pub/sub, where anyone with Redis access can publish. A bad one is logged and
 * ignored; it used to reach the governor unchecked, whose TypeError ended the live worker process.
 */
let redis: TestRedis;
let worker: RunningWorker;

beforeAll(async () => {
  redis = await startTestRedis();
  worker = await startWorker({
    REDIS_URL: redis.url,
    STORAGE_DIR: mkdtempSync(join(tmpdir(), 'pe-storage-')),
    HOST_ID: 'ctl-host',
    WORKER_ENGINES: 'classic',
  });
  await worker.waitForLog((r) => r.msg === 'worker ready');
});

afterAll(async () => {
  await worker?.stop();
  await redis?.close();
});

describe('operator control channel', () => {
  it('logs and ignores invalid messages, keeps running, and still applies a valid one', async () => {
    const pub = redis.client();
    const bad = [
      JSON.stringify({ type: 'admission', hostId: '*', admission: { maxUsedRatio: 5 } }),
      JSON.stringify({ type: 'admission', hostId: 'ctl-host', admission: { minAvailableBytes: -1 } }),
      JSON.stringify({ maxUsedRatio: 5 }),
      'not json',
    ];
    for (const m of bad) expect(await pub.publish(keys.controlChannel, m)).toBe(1);
    const ignored = (r: Record<string, unknown>): boolean => r.msg === 'ignored an invalid operator control message';
    // Messages on one connection arrive in order: once the last is logged, all four were handled.
    await worker.waitForLog((r) => ignored(r) && r.received === 'not json', 30_000);
    const logged = worker.output.filter((l) => l.includes('ignored an invalid operator control message'));
    expect(logged).toHaveLength(4);
    expect(logged[0]).toContain('maxUsedRatio');

    await pub.publish(keys.controlChannel, JSON.stringify({ type: 'admission', hostId: 'ctl-host', admission: { maxUsedRatio: 0.95 } }));
    await worker.waitForLog((r) => r.msg === 'admission thresholds changed by operator', 30_000);
    expect(worker.proc.exitCode).toBeNull();
    expect(worker.proc.signalCode).toBeNull();
  });
});

describe('parseControlMessage (the schema the gateway route also validates with)', () => {
  it.each([
    ['{"type":"admission","hostId":"*","admission":{"maxUsedRatio":5}}', /maxUsedRatio/],
    ['{"type":"admission","hostId":"*","admission":{}}', /admission/],
    ['{"type":"reboot","hostId":"*"}', /type|admission/],
    ['[1', /not JSON/],
  ])('refuses %s', (raw, why) => {
    const r = parseControlMessage(raw);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.problem).toMatch(why);
  });
  it('accepts a valid one', () => {
    expect(parseControlMessage('{"type":"admission","hostId":"h","admission":{"minAvailableBytes":0,"maxPressureSome10":20}}')).toEqual({
      ok: true,
      message: { type: 'admission', hostId: 'h', admission: { minAvailableBytes: 0, maxPressureSome10: 20 } },
    });
  });
});
