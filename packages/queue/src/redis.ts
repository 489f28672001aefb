import { Redis, type RedisOptions } from 'ioredis';

/**
 * Connection options from REDIS_URL: `redis://host:port/db`, `rediss://…`, `unix:///path/redis.sock`, or a bare socket path.
 */
export function redisOptions(url: string): RedisOptions {
  if (url.startsWith('/') || url.startsWith('unix:')) {
    const path = url.startsWith('unix:') ? new URL(url).pathname : url;
    return { path };
  }
  const u = new URL(url);
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') {
    throw new Error(`REDIS_URL must start with redis://, rediss://, unix:// or be a socket path; received ${JSON.stringify(url)}`);
  }
  return {
    host: u.hostname || '127.0.0.1',
    port: u.port ? Number(u.port) : 6379,
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    db: u.pathname && u.pathname.length > 1 ? Number(u.pathname.slice(1)) : 0,
    ...(u.protocol === 'rediss:' ? { tls: {} } : {}),
  };
}

/**
 * `blocking`: for BullMQ workers (commands wait through reconnects).
 * `fail-fast`: for the gateway, so a request answers 503 at once while Redis is down instead of hanging.
 */
export function createRedis(url: string, mode: 'blocking' | 'fail-fast', name?: string): Redis {
  const base = redisOptions(url);
  const retryStrategy = (times: number): number => Math.min(200 * times, 2000);
  if (mode === 'blocking') {
    return new Redis({ ...base, maxRetriesPerRequest: null, enableReadyCheck: true, retryStrategy, connectionName: name, lazyConnect: false });
  }
  return new Redis({ ...base, maxRetriesPerRequest: 1, enableOfflineQueue: false, retryStrategy, connectionName: name, connectTimeout: 2000 });
}

export class RedisPolicyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RedisPolicyError';
  }
}

/** Refuse to run unless Redis evicts nothing: BullMQ loses jobs under any other maxmemory-policy. */
export async function assertNoEviction(redis: Redis): Promise<void> {
  let policy: string | undefined;
  try {
    const res = (await redis.call('CONFIG', 'GET', 'maxmemory-policy')) as string[];
    policy = res[1];
  } catch {
    // CONFIG may be disabled on managed Redis; INFO still tells.
    const info = await redis.info('memory');
    policy = /maxmemory_policy:(\S+)/.exec(info)?.[1];
  }
  if (policy !== 'noeviction') {
    throw new RedisPolicyError(
      `Redis maxmemory-policy is ${JSON.stringify(policy ?? 'unknown')}, but it must be "noeviction": under any other policy Redis may evict queued jobs. ` +
        'Set "maxmemory-policy noeviction" in redis.conf (or run: redis-cli CONFIG SET maxmemory-policy noeviction) and start again.',
    );
  }
}

/** Wait until a connection is ready, or throw a message that says how to point at Redis. */
export async function waitForRedis(redis: Redis, timeoutMs: number, url: string): Promise<void> {
  if (redis.status === 'ready') return;
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => {
      cleanup();
      reject(new Error(`cannot reach Redis at ${url} within ${timeoutMs} ms; start redis-server or set REDIS_URL to a reachable server`));
    }, timeoutMs);
    const onReady = (): void => {
      cleanup();
      resolve();
    };
    const cleanup = (): void => {
      clearTimeout(t);
      redis.off('ready', onReady);
    };
    redis.on('ready', onReady);
  });
}
