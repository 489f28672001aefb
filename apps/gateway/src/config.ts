import { ConfigError, LogLevelSchema, Type, loadConfig, type Static } from '@photoenhance/config';
import { parseStorageUrl, storageSettingProblems } from '@photoenhance/storage';
import { REDIS_ENV, RedisConfigError, parseRedisTarget, type RedisTarget } from '@photoenhance/queue';

export const GatewayConfigSchema = Type.Object({
  host: Type.String({ default: '127.0.0.1', minLength: 1, description: 'Address to bind; loopback by default.' }),
  port: Type.Integer({ default: 8080, minimum: 0, maximum: 65535 }),
  publicUrl: Type.Optional(Type.String({ description: 'Base URL used in links (default: relative links).' })),
  redisUrl: Type.Optional(Type.String({ minLength: 1, description: 'One Redis node: redis://host:port, unix:///path or a socket path.' })),
  // --- Redis behind Sentinel or a Cluster (instead of REDIS_URL); see docs/redis.md ---
  redisPassword: Type.Optional(Type.String({ minLength: 1, description: 'Password of the Redis data nodes (Sentinel or Cluster; with REDIS_URL it may sit in the URL instead).' })),
  redisSentinels: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { description: 'Sentinels as host:port,host:port.' })),
  redisSentinelMaster: Type.Optional(Type.String({ minLength: 1, description: 'Master name the sentinels monitor.' })),
  redisSentinelPassword: Type.Optional(Type.String({ minLength: 1, description: 'Password of the sentinels themselves.' })),
  redisClusterNodes: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { description: 'Some cluster nodes as host:port,host:port.' })),
  /** Replicas that must acknowledge a submission before its 202 (WAIT); unset = 1 when the master has a replica, 0 = never wait. */
  redisWaitReplicas: Type.Optional(Type.Integer({ minimum: 0, maximum: 16 })),
  /** How long a submission waits for replicas before answering 503 NOT_REPLICATED. */
  redisWaitTimeoutMs: Type.Integer({ default: 1000, minimum: 1, maximum: 60_000 }),
  storageDir: Type.String({ default: './var/storage', minLength: 1 }),
  maxUploadBytes: Type.Integer({ default: 50 * 1024 * 1024, minimum: 1024 }),
  maxPixels: Type.Integer({ default: 40_000_000, minimum: 1 }),
  defaultEngine: Type.String({ default: 'classic', minLength: 1 }),
  /** Engines accepted even when no live worker offers them right now (jobs wait for a worker). */
  knownEngines: Type.Array(Type.String(), { default: ['classic'] }),
  jobAttempts: Type.Integer({ default: 3, minimum: 1, maximum: 50 }),
  jobBackoffMs: Type.Integer({ default: 2000, minimum: 0 }),
  jobTtlSeconds: Type.Integer({ default: 86_400, minimum: 1 }),
  sweepIntervalMs: Type.Integer({ default: 60_000, minimum: 100 }),
  logLevel: LogLevelSchema,
  /** Operator credential for /dashboard, /admin/queues and operator write endpoints; unset = loopback binding only. */
  dashboardToken: Type.Optional(Type.String({ minLength: 12, description: 'Operator token (Bearer, basic-auth password or /dashboard/login).' })),
  bullBoardReadOnly: Type.Boolean({ default: true, description: 'bull-board at /admin/queues cannot retry, clean or delete jobs.' }),
  dashboardSampleMs: Type.Integer({ default: 5000, minimum: 100, maximum: 60_000, description: 'Dashboard sampling period (charts keep one hour).' }),
  dashboardDir: Type.Optional(Type.String({ minLength: 1, description: 'Built dashboard assets (default apps/dashboard/dist).' })),
  // --- backpressure (issue 6) ---
  /** Submissions answer 503 QUEUE_FULL while this many jobs wait (waiting + prioritized + delayed, all engines). */
  maxQueuedJobs: Type.Integer({ default: 1000, minimum: 1 }),
  /** Submissions answer 503 WORKERS_HOLDING once every live worker host has held for memory this long. */
  holdingGraceMs: Type.Integer({ default: 30_000, minimum: 0 }),
  /** How long the queue depth and drain rate are cached (keeps the submission path cheap). */
  queueDepthCacheMs: Type.Integer({ default: 250, minimum: 0 }),
  /** Window over which finished jobs are counted to measure the drain rate for Retry-After. */
  drainWindowMs: Type.Integer({ default: 60_000, minimum: 1000 }),
  retryAfterMinSeconds: Type.Integer({ default: 1, minimum: 1 }),
  retryAfterMaxSeconds: Type.Integer({ default: 300, minimum: 1 }),
  /** Requests per client per window (by API key when keys are configured, else by address); 0 turns rate limiting off. */
  rateLimitMax: Type.Integer({ default: 0, minimum: 0 }),
  rateLimitWindowMs: Type.Integer({ default: 60_000, minimum: 100 }),
  /** API keys clients send as `Authorization: Bearer <key>` or `X-API-Key`; they scope rate limits, idempotency keys and compat task lists. */
  apiKeys: Type.Array(Type.String({ minLength: 8 }), { default: [] }),
  /** Gateway self-protection (503 OVERLOADED): event-loop delay and heap ceilings; 0 turns a check off. */
  maxEventLoopDelayMs: Type.Integer({ default: 1000, minimum: 0 }),
  maxHeapUsedBytes: Type.Integer({ default: 0, minimum: 0 }),
  // --- batches ---
  maxBatchItems: Type.Integer({ default: 500, minimum: 1, maximum: 100_000 }),
  /** Whole batch request (many images, or one ZIP archive). */
  maxBatchBytes: Type.Integer({ default: 2 * 1024 * 1024 * 1024, minimum: 1024 }),
  maxArchiveUncompressedBytes: Type.Integer({ default: 4 * 1024 * 1024 * 1024, minimum: 1024 }),
  /** Largest uncompressed/compressed ratio accepted for one archive entry (photos barely compress). */
  maxArchiveRatio: Type.Number({ default: 50, minimum: 1 }),
  // --- webhooks ---
  /** HMAC-SHA256 secret for webhook signatures; webhooks are refused while it is unset. */
  webhookSecret: Type.Optional(Type.String({ minLength: 16 })),
  /** Deliver webhooks to loopback, private and link-local addresses too (tests, closed networks). */
  webhookAllowPrivate: Type.Boolean({ default: false }),
  webhookAttempts: Type.Integer({ default: 8, minimum: 1, maximum: 50 }),
  webhookBackoffMs: Type.Integer({ default: 2000, minimum: 10 }),
  webhookTimeoutMs: Type.Integer({ default: 10_000, minimum: 100 }),
  // --- storage (issue 9): a folder (STORAGE_DIR) or S3-compatible object storage (STORAGE_URL=s3://BUCKET/PREFIX) ---
  storageUrl: Type.Optional(Type.String({ minLength: 1, description: 's3://BUCKET/PREFIX for object storage; else a folder (default STORAGE_DIR).' })),
  s3Endpoint: Type.Optional(Type.String({ minLength: 1, description: 'S3-compatible endpoint URL (MinIO, Ceph, R2, Garage); AWS when unset.' })),
  s3ForcePathStyle: Type.Boolean({ default: false, description: 'Path-style bucket addressing (most S3-compatible servers).' }),
  awsRegion: Type.Optional(Type.String({ minLength: 1, description: 'Region (default us-east-1).' })),
  awsAccessKeyId: Type.Optional(Type.String({ minLength: 1 })),
  awsSecretAccessKey: Type.Optional(Type.String({ minLength: 1 })),
  /** Bound on the start-up and /readyz storage checks. */
  storageCheckTimeoutMs: Type.Integer({ default: 5000, minimum: 100, maximum: 60_000 }),
  /** `presigned`: result downloads answer 302 to a short-lived presigned URL (object storage only). */
  resultRedirect: Type.Union([Type.Literal('none'), Type.Literal('presigned')], { default: 'none' }),
  presignExpiresSeconds: Type.Integer({ default: 300, minimum: 1, maximum: 604_800 }),
  /** At start-up, unfinished uploads older than this are removed (a dead local process's at once). */
  partialUploadMaxAgeSeconds: Type.Integer({ default: 3600, minimum: 1 }),
});
export type GatewayConfig = Static<typeof GatewayConfigSchema> & {
  /** Where Redis is (one node, Sentinel or Cluster), parsed once from the REDIS_* settings; every connection uses it. */
  readonly redis: RedisTarget;
};

export const GATEWAY_ENV = {
  host: 'HOST',
  port: 'PORT',
  publicUrl: 'PUBLIC_URL',
  ...REDIS_ENV,
  redisWaitReplicas: 'REDIS_WAIT_REPLICAS',
  redisWaitTimeoutMs: 'REDIS_WAIT_TIMEOUT_MS',
  storageDir: 'STORAGE_DIR',
  maxUploadBytes: 'MAX_UPLOAD_BYTES',
  maxPixels: 'MAX_PIXELS',
  defaultEngine: 'DEFAULT_ENGINE',
  knownEngines: 'KNOWN_ENGINES',
  jobAttempts: 'JOB_ATTEMPTS',
  jobBackoffMs: 'JOB_BACKOFF_MS',
  jobTtlSeconds: 'JOB_TTL_SECONDS',
  sweepIntervalMs: 'SWEEP_INTERVAL_MS',
  logLevel: 'LOG_LEVEL',
  dashboardToken: 'DASHBOARD_TOKEN',
  bullBoardReadOnly: 'BULL_BOARD_READONLY',
  dashboardSampleMs: 'DASHBOARD_SAMPLE_MS',
  dashboardDir: 'DASHBOARD_DIR',
  maxQueuedJobs: 'MAX_QUEUED_JOBS',
  holdingGraceMs: 'HOLDING_GRACE_MS',
  queueDepthCacheMs: 'QUEUE_DEPTH_CACHE_MS',
  drainWindowMs: 'DRAIN_WINDOW_MS',
  retryAfterMinSeconds: 'RETRY_AFTER_MIN_SECONDS',
  retryAfterMaxSeconds: 'RETRY_AFTER_MAX_SECONDS',
  rateLimitMax: 'RATE_LIMIT_MAX',
  rateLimitWindowMs: 'RATE_LIMIT_WINDOW_MS',
  apiKeys: 'API_KEYS',
  maxEventLoopDelayMs: 'MAX_EVENT_LOOP_DELAY_MS',
  maxHeapUsedBytes: 'MAX_HEAP_USED_BYTES',
  maxBatchItems: 'MAX_BATCH_ITEMS',
  maxBatchBytes: 'MAX_BATCH_BYTES',
  maxArchiveUncompressedBytes: 'MAX_ARCHIVE_UNCOMPRESSED_BYTES',
  maxArchiveRatio: 'MAX_ARCHIVE_RATIO',
  webhookSecret: 'WEBHOOK_SECRET',
  webhookAllowPrivate: 'WEBHOOK_ALLOW_PRIVATE',
  webhookAttempts: 'WEBHOOK_ATTEMPTS',
  webhookBackoffMs: 'WEBHOOK_BACKOFF_MS',
  webhookTimeoutMs: 'WEBHOOK_TIMEOUT_MS',
  storageUrl: 'STORAGE_URL',
  s3Endpoint: 'S3_ENDPOINT',
  s3ForcePathStyle: 'S3_FORCE_PATH_STYLE',
  awsRegion: 'AWS_REGION',
  awsAccessKeyId: 'AWS_ACCESS_KEY_ID',
  awsSecretAccessKey: 'AWS_SECRET_ACCESS_KEY',
  storageCheckTimeoutMs: 'STORAGE_CHECK_TIMEOUT_MS',
  resultRedirect: 'RESULT_REDIRECT',
  presignExpiresSeconds: 'PRESIGN_EXPIRES_SECONDS',
  partialUploadMaxAgeSeconds: 'PARTIAL_UPLOAD_MAX_AGE_SECONDS',
} as const;

export function loadGatewayConfig(opts: { env?: Record<string, string | undefined>; overrides?: Partial<GatewayConfig> } = {}): Readonly<GatewayConfig> {
  const env = opts.env ?? process.env;
  const config = loadConfig({ app: 'gateway', schema: GatewayConfigSchema, envNames: GATEWAY_ENV, env, file: env.GATEWAY_CONFIG, overrides: opts.overrides });
  if (config.retryAfterMinSeconds > config.retryAfterMaxSeconds) {
    throw new ConfigError('gateway', [`setting RETRY_AFTER_MIN_SECONDS (${config.retryAfterMinSeconds}) must not exceed RETRY_AFTER_MAX_SECONDS (${config.retryAfterMaxSeconds})`]);
  }
  const storageProblems = storageSettingProblems(config);
  if (config.resultRedirect === 'presigned' && parseStorageUrlSafe(config) !== 's3') storageProblems.push('RESULT_REDIRECT=presigned needs object storage (STORAGE_URL=s3://BUCKET/PREFIX)');
  if (storageProblems.length) throw new ConfigError('gateway', storageProblems.map((p) => `setting ${p}`));
  return Object.freeze({ ...config, redis: opts.overrides?.redis ?? redisTarget(config) });
}

function redisTarget(settings: Parameters<typeof parseRedisTarget>[0]): RedisTarget {
  try {
    return parseRedisTarget(settings);
  } catch (err) {
    if (err instanceof RedisConfigError) throw new ConfigError('gateway', err.problems);
    throw err;
  }
}

function parseStorageUrlSafe(c: Pick<GatewayConfig, 'storageUrl' | 'storageDir'>): string | undefined {
  try {
    return parseStorageUrl(c.storageUrl, c.storageDir).kind;
  } catch {
    return undefined;
  }
}
