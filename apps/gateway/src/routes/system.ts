import type { FastifyInstance } from 'fastify';
import type { GatewayContext } from '../context.js';
import { redisUnavailable } from '../problems.js';

export function systemRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  app.get('/healthz', async () => ({ status: 'ok', uptimeSeconds: Math.round(process.uptime()) }));

  app.get('/readyz', async (_req, reply) => {
    if (!ctx.redisReady()) throw redisUnavailable();
    try {
      await withTimeout(ctx.redis.ping(), 1000);
    } catch {
      throw redisUnavailable();
    }
    const hosts = await ctx.engines.hosts();
    return reply.send({ status: 'ready', redis: 'ok', workers: hosts.length });
  });

  app.get('/v1/system', async () => {
    const hosts = await ctx.engines.hosts();
    return { hosts, sseClients: ctx.events.clientCount() };
  });

  app.get('/v1/engines', async () => ({ default: ctx.config.defaultEngine, engines: await ctx.engines.list() }));
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('timeout')), ms);
    p.then((v) => { clearTimeout(t); resolve(v); }, (e: unknown) => { clearTimeout(t); reject(e instanceof Error ? e : new Error(String(e))); });
  });
}
