import type { RedisConnection as Redis } from '@photoenhance/queue';
import type { Logger } from 'pino';
import type { Storage } from '@photoenhance/storage';
import type { GatewayConfig } from './config.js';
import type { EngineDirectory } from './engine-directory.js';
import type { JobEventHub } from './job-events.js';
import type { JobService } from './job-service.js';
import type { GatewayAdmission } from './backpressure/admission.js';
import type { IdempotencyStore } from './idempotency/index.js';
import type { BatchService } from './batches/batch-service.js';

/** What routes need, built once in build(). */
export interface GatewayContext {
  config: Readonly<GatewayConfig>;
  redis: Redis;
  storage: Storage;
  jobs: JobService;
  engines: EngineDirectory;
  events: JobEventHub;
  logger: Logger;
  redisReady(): boolean;
  /** Bounded queue and worker-holding checks for submissions (503 QUEUE_FULL / WORKERS_HOLDING). */
  admission: GatewayAdmission;
  idempotency: IdempotencyStore;
  batches: BatchService;
}
