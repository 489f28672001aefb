import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import multipart from '@fastify/multipart';
import { pino, type Logger } from 'pino';
import type { RedisConnection as Redis } from '@photoenhance/queue';
import { assertNoEviction, createRedis, waitForRedis } from '@photoenhance/queue';
import { createStorage, type Storage } from '@photoenhance/storage';
import type { GatewayConfig } from './config.js';
import type { GatewayContext } from './context.js';
import { EngineDirectory } from './engine-directory.js';
import { JobEventHub } from './job-events.js';
import { JobService } from './job-service.js';
import { clientErrorProblem, idleTimeoutProblem, installProblemHandlers, setDrainLimits } from './problems.js';
import { installOperatorAuth } from './auth/operator-auth.js';
import { installApiKeyAuth } from './auth/api-keys.js';
import { installHostCheck } from './auth/hosts.js';
import { registerSecurityHeaders } from './auth/security-headers.js';
import { registerCors } from './cors.js';
import { registerObservability } from './dashboard/index.js';
import { registerOpenApi } from './openapi/index.js';
import { jobRoutes } from './routes/jobs.js';
import { systemRoutes } from './routes/system.js';
import { Sweeper } from './sweeper.js';
import { GatewayAdmission, registerBackpressure } from './backpressure/index.js';
import { IdempotencyStore } from './idempotency/index.js';
import { BatchService } from './batches/batch-service.js';
import { batchRoutes } from './batches/routes.js';
import { compatRoutes } from './compat/routes.js';
import { WebhookDeliveries } from './webhooks/deliveries.js';
import { WebhookDispatcher } from './webhooks/dispatcher.js';

export interface BuildOptions {
  config: Readonly<GatewayConfig>;
  logger?: Logger;
  /** Pass a connection to share one; by default the gateway opens a fail-fast one. */
  redis?: Redis;
  /** Check Redis (reachable, noeviction) before serving. Default true. */
  checkRedis?: boolean;
  /** Pass one to share it; by default built from STORAGE_URL / STORAGE_DIR, checked, and its leftovers cleaned. */
  storage?: Storage;
}

export interface Gateway {
  app: FastifyInstance;
  ctx: GatewayContext;
  sweeper: Sweeper;
}

/**
 * Build the gateway without listening (tests use inject() or listen on port 0).
 * Refuses to start unless Redis is reachable and its maxmemory-policy is noeviction.
 */
export async function build(opts: BuildOptions): Promise<Gateway> {
  const { config } = opts;
  const logger = opts.logger ?? pino({ name: 'gateway', level: config.logLevel });
  const ownRedis = !opts.redis;
  const redis = opts.redis ?? createRedis(config.redis, 'fail-fast', 'gateway');
  redis.on('error', (err: Error) => logger.debug({ err: err.message }, 'redis connection error'));
  if (opts.checkRedis !== false) {
    try {
      await waitForRedis(redis, 10_000, config.redis);
      await assertNoEviction(redis);
    } catch (err) {
      if (ownRedis) redis.disconnect();
      throw err;
    }
  }
  let redisReady = redis.status === 'ready';
  redis.on('ready', () => {
    if (!redisReady) logger.info('redis connection ready');
    redisReady = true;
  });
  redis.on('close', () => {
    if (redisReady) logger.warn('redis connection lost; submissions answer 503 until it returns');
    redisReady = false;
  });

  const storage = opts.storage ?? createStorage(config);
  if (!opts.storage) {
    try {
      // A wrong bucket, key or endpoint is a start-up error naming the variable, not a failure on the first upload.
      await storage.check(config.storageCheckTimeoutMs);
    } catch (err) {
      storage.close();
      if (ownRedis) redis.disconnect();
      throw err;
    }
    // Uploads a killed gateway left half-written; a live gateway's (here or on another host) are left alone.
    const removed = await storage.cleanPartials({ maxAgeMs: config.partialUploadMaxAgeSeconds * 1000 }).catch((err: unknown) => {
      logger.warn({ err: (err as Error).message }, 'could not clean unfinished uploads');
      return 0;
    });
    if (removed) logger.info({ removed, storage: storage.location }, 'removed unfinished uploads left by a stopped gateway');
    logger.info({ storage: storage.location, backend: storage.kind }, 'storage ready');
  }
  const jobs = new JobService(redis, storage, config);
  const engines = new EngineDirectory(redis, config.knownEngines, config.defaultEngine);
  const events = new JobEventHub(config.redis);
  const engineNames = async (): Promise<string[]> => (await engines.list()).map((e) => e.name);
  const admission = new GatewayAdmission(redis, config, engineNames, () => engines.hosts());
  const idempotency = new IdempotencyStore(redis, config.jobTtlSeconds);
  const batches = new BatchService(redis, jobs, config);
  const ctx: GatewayContext = { config, redis, storage, jobs, engines, events, logger, redisReady: () => redisReady && redis.status === 'ready', admission, idempotency, batches };
  // Webhooks only when a secret is set (submissions with a webhook are refused otherwise).
  const deliveries = config.webhookSecret
    ? new WebhookDeliveries({ redis: config.redis, secret: config.webhookSecret, allowPrivate: config.webhookAllowPrivate, attempts: config.webhookAttempts, backoffMs: config.webhookBackoffMs, timeoutMs: config.webhookTimeoutMs, keepSeconds: config.jobTtlSeconds }, logger)
    : undefined;
  const dispatcher = deliveries ? new WebhookDispatcher({ hub: events, jobs, batches, deliveries, logger, engineNames }) : undefined;

  const app = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    bodyLimit: 1024 * 1024,
    // Per-request lines only when debugging; errors are logged either way.
    logController: new LogController({ disableRequestLogging: config.logLevel !== 'debug' && config.logLevel !== 'trace' }),
    requestIdHeader: 'x-request-id',
    // Job ids are generated; long URLs only come from mistakes.
    routerOptions: { maxParamLength: 200 },
    // Connection limits (docs/limits.md): slowloris headers, a body that never ends, idle sockets.
    requestTimeout: config.httpRequestTimeoutMs,
    connectionTimeout: config.httpIdleTimeoutMs,
    keepAliveTimeout: config.httpKeepAliveTimeoutMs,
    http: { headersTimeout: config.httpHeadersTimeoutMs, connectionsCheckingInterval: config.httpTimeoutCheckIntervalMs },
    // What Node refuses before routing (431, 408, bad HTTP) also leaves as problem+json.
    clientErrorHandler: clientErrorProblem,
  });
  if (config.httpIdleTimeoutMs > 0) app.server.on('timeout', idleTimeoutProblem);
  setDrainLimits(app.server, { bytes: config.refusedBodyDrainBytes, ms: config.refusedBodyDrainMs });
  await app.register(multipart, { limits: { fileSize: config.maxUploadBytes, files: 1 } });
  installProblemHandlers(app, () => !ctx.redisReady());
  // CORS first: a preflight (no key, any Host check aside) is answered before host, rate-limit and key hooks run.
  await registerCors(app, config);
  // Security headers on every answer, then refuse host names this gateway does not serve (DNS rebinding).
  await registerSecurityHeaders(app, config);
  installHostCheck(app, config);
  // Rate limits and pressure checks hook every route registered after them.
  await registerBackpressure(app, config, redis);
  // Operator auth and the OpenAPI hooks must see every route, so they come before any.
  installOperatorAuth(app, config);
  // API keys (when configured) on every client route, with the owner check on routes that name a job or batch.
  installApiKeyAuth(app, config, redis);
  await registerOpenApi(app);
  systemRoutes(app, ctx);
  jobRoutes(app, ctx);
  batchRoutes(app, ctx);
  compatRoutes(app, ctx);
  await registerObservability(app, ctx);

  const sweeper = new Sweeper({
    redis,
    storage,
    jobs,
    logger,
    ttlSeconds: config.jobTtlSeconds,
    intervalMs: config.sweepIntervalMs,
    engineNames,
  });
  app.addHook('onReady', async () => {
    sweeper.start();
    deliveries?.start();
    dispatcher?.start();
  });
  app.addHook('onClose', async () => {
    sweeper.stop();
    dispatcher?.stop();
    await deliveries?.close();
    await events.close();
    await jobs.close();
    if (ownRedis) redis.disconnect();
    if (!opts.storage) storage.close();
  });
  return { app, ctx, sweeper };
}
