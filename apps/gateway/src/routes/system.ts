import { readFileSync } from 'node:fs';
import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@photoenhance/config';
import { AdmissionOverrideSchema, ApiError, type ControlMessage } from '@photoenhance/contracts';
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

export const systemRoutes: FastifyPluginAsync = async (app) => {
  app.get('/', async (req, reply) => {
    const accept = String(req.headers.accept ?? '');
    if (/\btext\/html\b/i.test(accept)) return reply.redirect('/dashboard', 302);
    return reply.header('vary', 'Accept').send(serviceDescription());
  });

  app.get('/healthz', async () => ({ status: 'ok', uptimeSeconds: Math.round(process.uptime()) }));

  app.get('/readyz', async (_req, reply) => {
    if (!app.redisReady()) throw redisUnavailable();
    try {
      await withTimeout(app.redis.ping(), 1000);
    } catch {
      throw redisUnavailable();
    }
    try {
      // Bounded: a storage server that hangs must not hang the probe.
      await app.storage.check(Math.min(app.config.storageCheckTimeoutMs, 2000));
    } catch (err) {
      throw Object.assign(storageUnavailable((err as Error).message), {
        extensions: { storage: 'unavailable', backend: app.storage.kind },
      });
    }
    const hosts = await app.engines.hosts();
    return reply.send({ status: 'ready', redis: 'ok', storage: 'ok', storageBackend: app.storage.kind, workers: hosts.length });
  });

  app.get('/v1/system', async () => {
    const hosts = await app.engines.hosts();
    const names = (await app.engines.list()).map((e) => e.name);
    const queues: Record<string, Record<string, number>> = {};
    await Promise.all(
      names.map(async (name) => {
        // Prefetched jobs count as waiting (engine-start.ts).
        queues[name] = await publicJobCounts(
          app.redis,
          name,
          await app.jobs.queue(name).getJobCounts('waiting', 'prioritized', 'delayed', 'active', 'completed', 'failed', 'paused'),
        );
      }),
    );
    return { hosts, queues, sseClients: app.jobEvents.clientCount() };
  });

  // The contract's TypeBox schema validates the body and types req.body (type provider), and documents the route.
  app.withTypeProvider<TypeBoxTypeProvider>().put(
    '/v1/system/hosts/:hostId/admission',
    {
      schema: {
        params: Type.Object({ hostId: Type.String({ description: 'A live host id, or * for every host' }) }),
        body: AdmissionOverrideSchema,
      },
    },
    async (req, reply) => {
      const { hostId } = req.params;
      const hosts = await app.engines.hosts();
      if (hostId !== '*' && !hosts.some((h) => h.hostId === hostId)) {
        throw new ApiError(
          'INVALID_REQUEST',
          `No live worker host "${hostId}" (live: ${hosts.map((h) => h.hostId).join(', ') || 'none'})`,
          { status: 404 },
        );
      }
      const msg: ControlMessage = { type: 'admission', hostId, admission: req.body };
      const receivers = await app.redis.publish(keys.controlChannel, JSON.stringify(msg));
      return reply.code(202).send({ hostId, admission: req.body, delivered: receivers });
    },
  );

  app.get('/v1/engines', async () => ({ default: app.config.defaultEngine, engines: await app.engines.list() }));
};

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('timeout')), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(t);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}
