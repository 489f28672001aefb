import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import multipart from '@fastify/multipart';
import { pino, type Logger } from 'pino';
import type { RedisConnection as Redis } from '@photoenhance/queue';
import type { Storage } from '@photoenhance/storage';
import type { GatewayConfig } from './config.js';
import { clientErrorProblem, idleTimeoutProblem, installProblemHandlers, setDrainLimits } from './problems.js';
import { installOperatorAuth } from './auth/operator-auth.js';
import { installApiKeyAuth } from './auth/api-keys.js';
import { installHostCheck } from './auth/hosts.js';
import { registerSecurityHeaders } from './auth/security-headers.js';
import { registerCors } from './cors.js';
import { observabilityPlugin } from './dashboard/index.js';
import { registerOpenApi } from './openapi/index.js';
import { jobRoutes } from './routes/jobs.js';
import { systemRoutes } from './routes/system.js';
import type { Sweeper } from './sweeper.js';
import { registerBackpressure } from './backpressure/index.js';
import { batchRoutes } from './batches/routes.js';
import { compatRoutes } from './compat/routes.js';
import { configPlugin } from './plugins/config.js';
import { redisPlugin } from './plugins/redis.js';
import { storagePlugin } from './plugins/storage.js';
import { servicesPlugin } from './plugins/services.js';
import { backgroundPlugin } from './plugins/background.js';

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
  /** Collaborators are decorators on it: app.jobs, app.queueBound, app.redis, app.storage, … (plugins/). */
  app: FastifyInstance;
  sweeper: Sweeper;
}

/**
 * Build the gateway without listening (tests use inject() or listen on port 0).
 * Refuses to start unless Redis is reachable and its maxmemory-policy is noeviction.
 */
export async function build(opts: BuildOptions): Promise<Gateway> {
  const { config } = opts;
  const logger = opts.logger ?? pino({ name: 'gateway', level: config.logLevel });
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
  try {
    // Collaborators first (decorators; a Redis or storage problem stops the start here), then hooks, then routes.
    await app.register(configPlugin, { config });
    await app.register(redisPlugin, { ...(opts.redis ? { redis: opts.redis } : {}), check: opts.checkRedis !== false });
    await app.register(storagePlugin, opts.storage ? { storage: opts.storage } : {});
    await app.register(servicesPlugin);
  } catch (err) {
    // Whatever a plugin opened before the failure is closed by its onClose hook.
    await app.close().catch(() => undefined);
    throw err;
  }
  if (config.httpIdleTimeoutMs > 0) app.server.on('timeout', idleTimeoutProblem);
  setDrainLimits(app.server, { bytes: config.refusedBodyDrainBytes, ms: config.refusedBodyDrainMs });
  await app.register(multipart, { limits: { fileSize: config.maxUploadBytes, files: 1 } });
  installProblemHandlers(app, () => !app.redisReady());
  // CORS first: a preflight (no key, any Host check aside) is answered before host, rate-limit and key hooks run.
  await registerCors(app);
  // Security headers on every answer, then refuse host names this gateway does not serve (DNS rebinding).
  await registerSecurityHeaders(app);
  installHostCheck(app);
  // Rate limits and pressure checks hook every route registered after them.
  await registerBackpressure(app);
  // Operator auth and the OpenAPI hooks must see every route, so they come before any.
  installOperatorAuth(app);
  // API keys (when configured) on every client route, with the owner check on routes that name a job or batch.
  installApiKeyAuth(app);
  await registerOpenApi(app);
  await app.register(systemRoutes);
  await app.register(jobRoutes);
  await app.register(batchRoutes);
  await app.register(compatRoutes);
  await app.register(observabilityPlugin);
  await app.register(backgroundPlugin);
  return { app, sweeper: app.sweeper };
}
