import fp from 'fastify-plugin';
import type { Logger } from 'pino';
import { QueueBound } from '../backpressure/queue-bound.js';
import { BatchService } from '../batches/batch-service.js';
import { EngineDirectory } from '../engine-directory.js';
import { IdempotencyStore } from '../idempotency/index.js';
import { JobIntake } from '../intake/job-intake.js';
import { JobEventHub } from '../job-events.js';
import { JobService } from '../job-service.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Jobs as the API sees them (BullMQ queues + records). */
    jobs: JobService;
    /** Known engines and the worker hosts that offer them. */
    engines: EngineDirectory;
    /** Live job events (one BullMQ event stream reader per engine), for SSE. */
    jobEvents: JobEventHub;
    /** The gateway's backpressure on submissions: 503 QUEUE_FULL / WORKERS_HOLDING. */
    queueBound: QueueBound;
    idempotency: IdempotencyStore;
    batches: BatchService;
    /** Accepts jobs and batches for the native, batch and compat routes. */
    intake: JobIntake;
  }
}

/** Names of the engines the gateway knows (configured and offered by live hosts). */
export const engineNames = async (engines: EngineDirectory): Promise<string[]> => (await engines.list()).map((e) => e.name);

/** The gateway's services, each a decorator, built on the Redis, storage and config decorators. */
export const servicesPlugin = fp(
  async (app) => {
    const { config, redis, storage } = app;
    const jobs = new JobService(redis, storage, config);
    const engines = new EngineDirectory(redis, config.knownEngines, config.defaultEngine);
    const jobEvents = new JobEventHub(config.redis);
    const queueBound = new QueueBound(
      redis,
      config,
      () => engineNames(engines),
      () => engines.hosts(),
    );
    const idempotency = new IdempotencyStore(redis, config.jobTtlSeconds);
    const batches = new BatchService(redis, jobs, config);
    const intake = new JobIntake({
      config,
      storage,
      jobs,
      engines,
      queueBound,
      idempotency,
      batches,
      redisReady: () => app.redisReady(),
      logger: app.log.child({ component: 'intake' }) as Logger,
    });
    app.decorate('jobs', jobs);
    app.decorate('engines', engines);
    app.decorate('jobEvents', jobEvents);
    app.decorate('queueBound', queueBound);
    app.decorate('idempotency', idempotency);
    app.decorate('batches', batches);
    app.decorate('intake', intake);
    app.addHook('onClose', async () => {
      await jobEvents.close();
      await jobs.close();
    });
  },
  { name: 'gateway-services', fastify: '5.x', dependencies: ['gateway-config', 'gateway-redis', 'gateway-storage'] },
);
