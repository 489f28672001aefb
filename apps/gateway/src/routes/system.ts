import { readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import type { GatewayContext } from '../context.js';
import { AdmissionOverrideSchema, ApiError, type AdmissionOverride, type ControlMessage } from '@photoenhance/contracts';
import { keys, publicJobCounts } from '@photoenhance/queue';
import { redisUnavailable, storageUnavailable } from '../problems.js';

const GATEWAY_VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/**
 * `GET /`: the service description PhotoEnhanceAI's clients read (its test client calls it first): service, version,
 * status and endpoints, as JSON. A browser (Accept naming text/html) is sent to the dashboard instead.
 */
export function serviceDescription(): Record<string, unknown> {
  return {
    service: 'PhotoEnhance Gateway',
    version: GATEWAY_VERSION,
    status: 'running',
    compatible_with: 'PhotoEnhanceAI API v1',
    endpoints: {
      health: '/health',
      enhance: '/api/v1/enhance',
      status: '/api/v1/status/{task_id}',
      download: '/api/v1/download/{task_id}',
      tasks: '/api/v1/tasks',
      delete_task: '/api/v1/tasks/{task_id}',
      batch_enhance: '/api/v1/enhance/batch',
      batch_status: '/api/v1/batch/status/{batch_id}',
      batch_download: '/api/v1/batch/download/{batch_id}',
      jobs: '/v1/jobs',
      batches: '/v1/batches',
      engines: '/v1/engines',
      docs: '/docs',
      openapi: '/docs/json',
      dashboard: '/dashboard',
    },
  };
}

export function systemRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  app.get('/', async (req, reply) => {
    const accept = String(req.headers.accept ?? '');
    if (/\btext\/html\b/i.test(accept)) return reply.redirect('/dashboard', 302);
    return reply.header('vary', 'Accept').send(serviceDescription());
  });

  app.get('/healthz', async () => ({ status: 'ok', uptimeSeconds: Math.round(process.uptime()) }));

  app.get('/readyz', async (_req, reply) => {
    if (!ctx.redisReady()) throw redisUnavailable();
    try {
      await withTimeout(ctx.redis.ping(), 1000);
    } catch {
      throw redisUnavailable();
    }
    try {
      // Bounded: a storage server that hangs must not hang the probe.
      await ctx.storage.check(Math.min(ctx.config.storageCheckTimeoutMs, 2000));
    } catch (err) {
      throw Object.assign(storageUnavailable((err as Error).message), { extensions: { storage: 'unavailable', backend: ctx.storage.kind } });
    }
    const hosts = await ctx.engines.hosts();
    return reply.send({ status: 'ready', redis: 'ok', storage: 'ok', storageBackend: ctx.storage.kind, workers: hosts.length });
  });

  app.get('/v1/system', async () => {
    const hosts = await ctx.engines.hosts();
    const names = (await ctx.engines.list()).map((e) => e.name);
    const queues: Record<string, Record<string, number>> = {};
    await Promise.all(names.map(async (name) => {
      // Prefetched jobs count as waiting (engine-start.ts).
      queues[name] = await publicJobCounts(ctx.redis, name, await ctx.jobs.queue(name).getJobCounts('waiting', 'prioritized', 'delayed', 'active', 'completed', 'failed', 'paused'));
    }));
    return { hosts, queues, sseClients: ctx.events.clientCount() };
  });

  app.put<{ Params: { hostId: string }; Body: AdmissionOverride }>('/v1/system/hosts/:hostId/admission', {
    schema: { body: AdmissionOverrideSchema },
  }, async (req, reply) => {
    const { hostId } = req.params;
    const hosts = await ctx.engines.hosts();
    if (hostId !== '*' && !hosts.some((h) => h.hostId === hostId)) {
      throw new ApiError('INVALID_REQUEST', `No live worker host "${hostId}" (live: ${hosts.map((h) => h.hostId).join(', ') || 'none'})`, { status: 404 });
    }
    const msg: ControlMessage = { type: 'admission', hostId, admission: req.body };
    const receivers = await ctx.redis.publish(keys.controlChannel, JSON.stringify(msg));
    return reply.code(202).send({ hostId, admission: req.body, delivered: receivers });
  });

  app.get('/v1/engines', async () => ({ default: ctx.config.defaultEngine, engines: await ctx.engines.list() }));
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('timeout')), ms);
    p.then((v) => { clearTimeout(t); resolve(v); }, (e: unknown) => { clearTimeout(t); reject(e instanceof Error ? e : new Error(String(e))); });
  });
}
