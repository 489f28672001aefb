import fp from 'fastify-plugin';
import { assertNoEviction, createRedis, waitForRedis, type RedisConnection as Redis } from '@photoenhance/queue';

declare module 'fastify' {
  interface FastifyInstance {
    /** The gateway's Redis connection (BullMQ queues, records, rate limits and idempotency share it). */
    redis: Redis;
    /** False while the connection is down: submissions answer 503 REDIS_UNAVAILABLE instead of hanging. */
    redisReady(): boolean;
  }
}

export interface RedisPluginOptions {
  /** Pass a connection to share one (the caller closes it); by default a fail-fast one is opened here. */
  redis?: Redis;
  /** Check Redis (reachable, noeviction) before serving. Default true. */
  check?: boolean;
}

/**
 * Redis as a decorator. Refuses to start unless Redis is reachable and its maxmemory-policy is noeviction; a
 * connection opened here is closed with the app.
 */
export const redisPlugin = fp<RedisPluginOptions>(
  async (app, opts) => {
    const { config } = app;
    const logger = app.log.child({ component: 'redis' });
    const own = !opts.redis;
    const redis = opts.redis ?? createRedis(config.redis, 'fail-fast', 'gateway');
    redis.on('error', (err: Error) => logger.debug({ err }, 'redis connection error'));
    if (opts.check !== false) {
      try {
        await waitForRedis(redis, 10_000, config.redis);
        await assertNoEviction(redis);
      } catch (err) {
        if (own) redis.disconnect();
        throw err;
      }
    }
    let ready = redis.status === 'ready';
    redis.on('ready', () => {
      if (!ready) logger.info('redis connection ready');
      ready = true;
    });
    redis.on('close', () => {
      if (ready) logger.warn('redis connection lost; submissions answer 503 until it returns');
      ready = false;
    });
    app.decorate<Redis, 'redis'>('redis', redis);
    app.decorate('redisReady', () => ready && redis.status === 'ready');
    // Registered first, so it runs after every other plugin's onClose that still needs Redis.
    if (own) app.addHook('onClose', async () => redis.disconnect());
  },
  { name: 'gateway-redis', fastify: '5.x', dependencies: ['gateway-config'] },
);
