import fp from 'fastify-plugin';
import type { Logger } from 'pino';
import { Sweeper } from '../sweeper.js';
import { WebhookDeliveries } from '../webhooks/deliveries.js';
import { WebhookDispatcher } from '../webhooks/dispatcher.js';
import { engineNames } from './services.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Expires finished jobs and their files (one gateway at a time). */
    sweeper: Sweeper;
  }
}

/**
 * The gateway's background work: the sweeper, and webhook deliveries (only when a secret is set; submissions with a
 * webhook are refused otherwise). Started when the app is ready, stopped when it closes.
 */
export const backgroundPlugin = fp(
  async (app) => {
    const { config, redis, storage, jobs, jobEvents, batches, engines } = app;
    const names = (): Promise<string[]> => engineNames(engines);
    const webhookLog = app.log.child({ component: 'webhooks' }) as Logger;
    const deliveries = config.webhookSecret
      ? new WebhookDeliveries(
          {
            redis: config.redis,
            secret: config.webhookSecret,
            allowPrivate: config.webhookAllowPrivate,
            attempts: config.webhookAttempts,
            backoffMs: config.webhookBackoffMs,
            timeoutMs: config.webhookTimeoutMs,
            keepSeconds: config.jobTtlSeconds,
          },
          webhookLog,
        )
      : undefined;
    const dispatcher = deliveries
      ? new WebhookDispatcher({ hub: jobEvents, jobs, batches, deliveries, logger: webhookLog, engineNames: names })
      : undefined;
    const sweeper = new Sweeper({
      redis,
      storage,
      jobs,
      logger: app.log.child({ component: 'sweeper' }) as Logger,
      ttlSeconds: config.jobTtlSeconds,
      intervalMs: config.sweepIntervalMs,
      engineNames: names,
    });
    app.decorate('sweeper', sweeper);
    app.addHook('onReady', async () => {
      sweeper.start();
      deliveries?.start();
      dispatcher?.start();
    });
    app.addHook('onClose', async () => {
      sweeper.stop();
      dispatcher?.stop();
      await deliveries?.close();
    });
  },
  { name: 'gateway-background', fastify: '5.x', dependencies: ['gateway-services'] },
);
