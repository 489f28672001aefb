import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startTestRedis, type TestRedis } from './support/redis.js';
import { REPO, startGateway } from './support/stack.js';

/** BullMQ loses jobs under any eviction policy: the gateway and the worker refuse to start, naming the setting. */
let redis: TestRedis;

beforeAll(async () => {
  redis = await startTestRedis({ policy: 'allkeys-lru' });
});

afterAll(async () => {
  await redis?.close();
});

it('the gateway refuses a Redis whose maxmemory-policy is not noeviction', async () => {
  await expect(startGateway(redis.url)).rejects.toThrow(/maxmemory-policy is "allkeys-lru", but it must be "noeviction"/);
});

it('the worker refuses it too, exits 78 and says how to fix it', async () => {
  const proc = spawn(process.execPath, ['--import', 'tsx', join(REPO, 'apps/worker/src/main.ts')], {
    cwd: REPO,
    env: { ...process.env, REDIS_URL: redis.url, LOG_LEVEL: 'info', ENFORCEMENT: 'watchdog' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((resolve) => proc.once('exit', (c) => resolve(c)));
  expect(code).toBe(78);
  expect(out).toContain('maxmemory-policy');
  expect(out).toContain('CONFIG SET maxmemory-policy noeviction');
});
