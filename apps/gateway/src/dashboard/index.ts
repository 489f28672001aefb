import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { Logger } from 'pino';
import { ApiError } from '@photoenhance/contracts';
import { GatewayMetrics, metricsRoute } from '../metrics/metrics.js';
import { QueueObserver } from '../metrics/observer.js';
import { dashboardApi } from './api.js';
import { mountBullBoard } from './bull-board.js';
import { DashboardStream } from './live.js';

/** Where `npm run build -w @photoenhance/dashboard` writes the front-end. */
export const DEFAULT_DASHBOARD_DIR = fileURLToPath(new URL('../../../dashboard/dist/', import.meta.url));

declare module 'fastify' {
  interface FastifyInstance {
    /** Samples queue counts, hosts and job changes for the dashboard and /metrics. */
    observer: QueueObserver;
    /** Prometheus metrics (GET /metrics). */
    metrics: GatewayMetrics;
    /** The dashboard's live SSE stream. */
    dashboardStream: DashboardStream;
  }
}

/**
 * The operator side of the gateway: /dashboard (built front-end + its API and SSE stream), /admin/queues (bull-board)
 * and /metrics. Access control comes from installOperatorAuth (auth/), which must be installed before this.
 */
export const observabilityPlugin = fp(
  async (app) => {
    const { config } = app;
    const observer = new QueueObserver({
      redis: app.redis,
      target: config.redis,
      jobs: app.jobs,
      engines: app.engines,
      logger: app.log.child({ component: 'dashboard' }) as Logger,
      sampleMs: config.dashboardSampleMs,
    });
    const stream = new DashboardStream(observer);
    const metrics = new GatewayMetrics({ observer, sseClients: () => ({ job: app.jobEvents.clientCount(), dashboard: stream.count() }) });
    app.decorate('observer', observer);
    app.decorate('metrics', metrics);
    app.decorate('dashboardStream', stream);

    metricsRoute(app, metrics);
    dashboardApi(app);
    serveFrontEnd(app, config.dashboardDir ?? DEFAULT_DASHBOARD_DIR);
    const board = await mountBullBoard(app);
    observer.on('sample', () => board.sync(observer.engineNames()));

    app.addHook('onReady', async () => observer.start());
    // SSE streams are long-lived: end them before the server waits for connections to close.
    app.addHook('preClose', async () => stream.close());
    app.addHook('onClose', async () => observer.close());
  },
  { name: 'gateway-observability', fastify: '5.x', dependencies: ['gateway-services'] },
);

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
