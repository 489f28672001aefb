import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance } from 'fastify';
import { ApiError } from '@photoenhance/contracts';
import type { GatewayContext } from '../context.js';
import { GatewayMetrics, metricsRoute } from '../metrics/metrics.js';
import { QueueObserver } from '../metrics/observer.js';
import { dashboardApi } from './api.js';
import { mountBullBoard } from './bull-board.js';
import { DashboardStream } from './live.js';

/** Where `npm run build -w @photoenhance/dashboard` writes the front-end. */
export const DEFAULT_DASHBOARD_DIR = fileURLToPath(new URL('../../../dashboard/dist/', import.meta.url));

export interface Observability {
  observer: QueueObserver;
  metrics: GatewayMetrics;
  stream: DashboardStream;
}

/**
 * The operator side of the gateway: /dashboard (built front-end + its API and SSE stream), /admin/queues (bull-board)
 * and /metrics. Access control comes from installOperatorAuth (auth/), which must be installed before this.
 */
export async function registerObservability(app: FastifyInstance, ctx: GatewayContext): Promise<Observability> {
  const observer = new QueueObserver({ redis: ctx.redis, target: ctx.config.redis, jobs: ctx.jobs, engines: ctx.engines, logger: ctx.logger, sampleMs: ctx.config.dashboardSampleMs });
  const stream = new DashboardStream(observer);
  const metrics = new GatewayMetrics({ observer, sseClients: () => ({ job: ctx.events.clientCount(), dashboard: stream.count() }) });

  metricsRoute(app, metrics);
  dashboardApi(app, ctx, observer, stream);
  serveFrontEnd(app, ctx.config.dashboardDir ?? DEFAULT_DASHBOARD_DIR);
  const board = await mountBullBoard(app, ctx);
  observer.on('sample', () => board.sync(observer.engineNames()));

  app.addHook('onReady', async () => observer.start());
  // SSE streams are long-lived: end them before the server waits for connections to close.
  app.addHook('preClose', async () => stream.close());
  app.addHook('onClose', async () => observer.close());
  return { observer, metrics, stream };
}

function serveFrontEnd(app: FastifyInstance, dir: string): void {
  app.get('/dashboard', { schema: { hide: true } }, async (_req, reply) => reply.redirect('/dashboard/', 308));
  if (!existsSync(join(dir, 'index.html'))) {
    const notBuilt = async (): Promise<never> => {
      throw new ApiError('DASHBOARD_NOT_BUILT', `The dashboard front-end is not built (no ${join(dir, 'index.html')})`);
    };
    app.get('/dashboard/', { schema: { hide: true } }, notBuilt);
    app.get('/dashboard/assets/*', { schema: { hide: true } }, notBuilt);
    return;
  }
  void app.register(async (scope) => {
    scope.addHook('onRoute', (route) => {
      route.schema = { ...(route.schema ?? {}), hide: true };
    });
    await scope.register(fastifyStatic, {
      root: dir,
      prefix: '/dashboard/',
      decorateReply: false,
      wildcard: true,
      index: ['index.html'],
      // Vite names assets by content hash: cache them for long; the page itself always revalidates.
      setHeaders(reply, path) {
        reply.header('cache-control', path.includes(`${join(dir, 'assets')}`) ? 'public, max-age=31536000, immutable' : 'no-cache');
      },
    });
  });
}
