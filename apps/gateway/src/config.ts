import { readFileSync } from 'node:fs';
import { Bytes, ConfigError, Duration, LogFormatSchema, LogLevelSchema, Type, loadConfig, type StaticDecode } from '@photoenhance/config';
import { keyFileEntries, parseKeyEntry } from './auth/keyring.js';
import { hostName } from './auth/hosts.js';
import { STORAGE_ENV, parseStorageUrl, storageSettingProblems } from '@photoenhance/storage';
import { REDIS_ENV, RedisConfigError, parseRedisTarget, type RedisTarget } from '@photoenhance/queue';

export const GatewayConfigSchema = Type.Object({
  host: Type.String({ default: '127.0.0.1', minLength: 1, description: 'Address to bind; loopback by default.' }),
  port: Type.Integer({ default: 8080, minimum: 0, maximum: 65535 }),
  publicUrl: Type.Optional(Type.String({ description: 'Base URL used in links (default: relative links).' })),
  redisUrl: Type.Optional(Type.String({ minLength: 1, description: 'One Redis node: redis://host:port, unix:///path or a socket path.' })),
  // --- Redis behind Sentinel or a Cluster (instead of REDIS_URL); see docs/redis.md ---
  redisPassword: Type.Optional(
    Type.String({
      minLength: 1,
      description: 'Password of the Redis data nodes (Sentinel or Cluster; with REDIS_URL it may sit in the URL instead).',
    }),
  ),
  redisSentinels: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { description: 'Sentinels as host:port,host:port.' })),
  redisSentinelMaster: Type.Optional(Type.String({ minLength: 1, description: 'Master name the sentinels monitor.' })),
  redisSentinelPassword: Type.Optional(Type.String({ minLength: 1, description: 'Password of the sentinels themselves.' })),
  redisClusterNodes: Type.Optional(
    Type.Array(Type.String({ minLength: 1 }), { description: 'Some cluster nodes as host:port,host:port.' }),
  ),
  /** Replicas that must acknowledge a submission before its 202 (WAIT); unset = 1 when the master has a replica, 0 = never wait. */
  redisWaitReplicas: Type.Optional(Type.Integer({ minimum: 0, maximum: 16 })),
  /** How long a submission waits for replicas before answering 503 NOT_REPLICATED. */
  redisWaitTimeoutMs: Type.Integer({ default: 1000, minimum: 1, maximum: 60_000 }),
  storageDir: Type.String({ default: './var/storage', minLength: 1 }),
  maxUploadBytes: Bytes({ default: 50 * 1024 * 1024, minimum: 1024 }),
  maxPixels: Type.Integer({ default: 40_000_000, minimum: 1 }),
  defaultEngine: Type.String({ default: 'classic', minLength: 1 }),
  /**
   * Engine names the gateway knows besides those live workers offer: a name in neither is 400 UNKNOWN_ENGINE (a typo);
   * a known name no live worker offers is 503 NO_WORKER_FOR_ENGINE, or accepted to wait with ACCEPT_WITHOUT_WORKER.
   */
  knownEngines: Type.Array(Type.String(), { default: ['classic'] }),
  /** Accept jobs for a known engine no live worker offers (202 with a `warning`; they wait for a worker) instead of 503. */
  acceptWithoutWorker: Type.Boolean({ default: false }),
  jobAttempts: Type.Integer({ default: 3, minimum: 1, maximum: 50 }),
  jobBackoffMs: Duration({ default: 2000, minimum: 0 }),
  jobTtlSeconds: Type.Integer({ default: 86_400, minimum: 1 }),
  sweepIntervalMs: Duration({ default: 60_000, minimum: 100 }),
  logLevel: LogLevelSchema,
  /** auto: pretty on a terminal, JSON lines otherwise; json or pretty force one. */
  logFormat: LogFormatSchema,
  /** Operator credential for /dashboard, /admin/queues and operator write endpoints; unset = loopback binding only. */
  dashboardToken: Type.Optional(
    Type.String({ minLength: 12, description: 'Operator token (Bearer, basic-auth password or /dashboard/login).' }),
  ),
  bullBoardReadOnly: Type.Boolean({ default: true, description: 'bull-board at /admin/queues cannot retry, clean or delete jobs.' }),
  dashboardSampleMs: Duration({
    default: 5000,
    minimum: 100,
    maximum: 60_000,
    description: 'Dashboard sampling period (charts keep one hour).',
  }),
  dashboardDir: Type.Optional(Type.String({ minLength: 1, description: 'Built dashboard assets (default apps/dashboard/dist).' })),
  // --- backpressure (issue 6) ---
  /** Submissions answer 503 QUEUE_FULL while this many jobs wait (waiting + prioritized + delayed, all engines). */
  maxQueuedJobs: Type.Integer({ default: 1000, minimum: 1 }),
  /** Submissions answer 503 WORKERS_HOLDING once every live worker host has held for memory this long. */
  holdingGraceMs: Duration({ default: 30_000, minimum: 0 }),
  /** How long the queue depth and drain rate are cached (keeps the submission path cheap). */
  queueDepthCacheMs: Duration({ default: 250, minimum: 0 }),
  /** Window over which finished jobs are counted to measure the drain rate for Retry-After. */
  drainWindowMs: Duration({ default: 60_000, minimum: 1000 }),
  retryAfterMinSeconds: Type.Integer({ default: 1, minimum: 1 }),
  retryAfterMaxSeconds: Type.Integer({ default: 300, minimum: 1 }),
  /** Requests per client per window (by API key when keys are configured, else by address); 0 turns rate limiting off. */
  rateLimitMax: Type.Integer({ default: 0, minimum: 0 }),
  rateLimitWindowMs: Duration({ default: 60_000, minimum: 100 }),
  /**
   * API keys clients send as `Authorization: Bearer <secret>` or `X-API-Key`; entries are `secret` or `name:secret` (logs
   * show the name). Set, they are required on every job, batch and compat route and jobs belong to their key
   * (docs/security.md); they also scope rate limits, idempotency keys and compat task lists.
   */
  apiKeys: Type.Array(Type.String({ minLength: 8 }), { default: [] }),
  /** A file of more keys, one a line (`#` comments), read once at start-up; its keys are added to apiKeys. */
  apiKeysFile: Type.Optional(Type.String({ minLength: 1 })),
  /** Host names served besides loopback names, IP addresses, HOST and PUBLIC_URL's host (`.example.com` = its subdomains, `*` = any). */
  allowedHosts: Type.Array(Type.String({ minLength: 1 }), { default: [] }),
  /**
   * Origins whose pages may call the job, batch and compat routes from a browser (CORS): `*` (the default: keys travel in
   * headers, never cookies) or a list of origins (`https://app.example.com`); `none` turns CORS off. Never on operator routes.
   */
  corsOrigins: Type.Array(Type.String({ minLength: 1 }), { default: ['*'] }),
  /** Gateway self-protection (503 OVERLOADED): event-loop delay and heap ceilings; 0 turns a check off. */
  maxEventLoopDelayMs: Duration({ default: 1000, minimum: 0 }),
  maxHeapUsedBytes: Bytes({ default: 0, minimum: 0 }),
  // --- edges: connection limits and refused input (docs/limits.md) ---
  /** Whole request (headers and body) must arrive within this; 15 min lets a 50 MiB upload through at ~0.5 Mbit/s. 0 = none. */
  httpRequestTimeoutMs: Duration({ default: 900_000, minimum: 0 }),
  /** Request headers must arrive within this (slowloris). */
  httpHeadersTimeoutMs: Duration({ default: 30_000, minimum: 1000 }),
  /** A connection with no bytes in either direction for this long is closed (SSE streams ping every 15 s). 0 = never. */
  httpIdleTimeoutMs: Duration({ default: 120_000, minimum: 0 }),
  /** An idle keep-alive connection is closed after this. */
  httpKeepAliveTimeoutMs: Duration({ default: 5000, minimum: 1 }),
  /** How often Node checks the header and request timeouts (their granularity). */
  httpTimeoutCheckIntervalMs: Duration({ default: 2000, minimum: 100 }),
  /** A multipart body that stops moving although the client has sent it (a stalled parser) is refused after this. */
  multipartStallTimeoutMs: Duration({ default: 15_000, minimum: 100 }),
  /** After refusing a body early (413, malformed), read and discard up to this many more bytes so the client, still sending, gets the answer. */
  refusedBodyDrainBytes: Bytes({ default: 64 * 1024 * 1024, minimum: 0 }),
  /** ... for at most this long, then close. */
  refusedBodyDrainMs: Duration({ default: 5000, minimum: 0 }),
  /** Shorter side of an accepted image, in pixels (smaller ones are refused: 422 IMAGE_DIMENSIONS_TOO_SMALL). */
  minImageSide: Type.Integer({ default: 4, minimum: 1 }),
  /** Longer side / shorter side of an accepted image (422 IMAGE_ASPECT_RATIO_TOO_EXTREME above it). */
  maxAspectRatio: Type.Number({ default: 32, minimum: 1 }),
  /**
   * How an upload is proven readable before it is queued: `structure` walks the file's structure (JPEG markers to EOI,
   * PNG chunks and CRCs, WebP RIFF sizes, BMP headers; refuses truncated and cut files, cheap), `decode` decodes it
   * (also catches corrupt compressed data inside an intact structure; costs a decode per upload). docs/limits.md.
   */
  uploadCheck: Type.Union([Type.Literal('structure'), Type.Literal('decode')], { default: 'structure' }),
  // --- batches ---
  maxBatchItems: Type.Integer({ default: 500, minimum: 1, maximum: 100_000 }),
  /** Whole batch request (many images, or one ZIP archive). */
  maxBatchBytes: Bytes({ default: 2 * 1024 * 1024 * 1024, minimum: 1024 }),
  maxArchiveUncompressedBytes: Bytes({ default: 4 * 1024 * 1024 * 1024, minimum: 1024 }),
  /** Largest uncompressed/compressed ratio accepted for one archive entry (photos barely compress). */
  maxArchiveRatio: Type.Number({ default: 50, minimum: 1 }),
  // --- webhooks ---
  /** HMAC-SHA256 secret for webhook signatures; webhooks are refused while it is unset. */
  webhookSecret: Type.Optional(Type.String({ minLength: 16 })),
  /** Deliver webhooks to loopback, private and link-local addresses too (tests, closed networks). */
  webhookAllowPrivate: Type.Boolean({ default: false }),
  webhookAttempts: Type.Integer({ default: 8, minimum: 1, maximum: 50 }),
  webhookBackoffMs: Duration({ default: 2000, minimum: 10 }),
  webhookTimeoutMs: Duration({ default: 10_000, minimum: 100 }),
  // --- storage (issue 9): a folder (STORAGE_DIR) or S3-compatible object storage (STORAGE_URL=s3://BUCKET/PREFIX) ---
  storageUrl: Type.Optional(
    Type.String({ minLength: 1, description: 's3://BUCKET/PREFIX for object storage; else a folder (default STORAGE_DIR).' }),
  ),
  s3Endpoint: Type.Optional(
    Type.String({ minLength: 1, description: 'S3-compatible endpoint URL (MinIO, Ceph, R2, Garage); AWS when unset.' }),
  ),
  s3ForcePathStyle: Type.Boolean({ default: false, description: 'Path-style bucket addressing (most S3-compatible servers).' }),
  awsRegion: Type.Optional(Type.String({ minLength: 1, description: 'Region (default us-east-1).' })),
  awsAccessKeyId: Type.Optional(Type.String({ minLength: 1 })),
  awsSecretAccessKey: Type.Optional(Type.String({ minLength: 1 })),
  /** Bound on the start-up and /readyz storage checks. */
  storageCheckTimeoutMs: Duration({ default: 5000, minimum: 100, maximum: 60_000 }),
  /** `presigned`: result downloads answer 302 to a short-lived presigned URL (object storage only). */
  resultRedirect: Type.Union([Type.Literal('none'), Type.Literal('presigned')], { default: 'none' }),
  presignExpiresSeconds: Type.Integer({ default: 300, minimum: 1, maximum: 604_800 }),
  /** At start-up, unfinished uploads older than this are removed (a dead local process's at once). */
  partialUploadMaxAgeSeconds: Type.Integer({ default: 3600, minimum: 1 }),
});
export type GatewayConfig = StaticDecode<typeof GatewayConfigSchema> & {
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
  maxUploadBytes: 'MAX_UPLOAD_BYTES',
  maxPixels: 'MAX_PIXELS',
  defaultEngine: 'DEFAULT_ENGINE',
  knownEngines: 'KNOWN_ENGINES',
  acceptWithoutWorker: 'ACCEPT_WITHOUT_WORKER',
  jobAttempts: 'JOB_ATTEMPTS',
  jobBackoffMs: 'JOB_BACKOFF_MS',
  jobTtlSeconds: 'JOB_TTL_SECONDS',
  sweepIntervalMs: 'SWEEP_INTERVAL_MS',
  logLevel: 'LOG_LEVEL',
  logFormat: 'LOG_FORMAT',
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
  apiKeysFile: 'API_KEYS_FILE',
  allowedHosts: 'ALLOWED_HOSTS',
  corsOrigins: 'CORS_ORIGINS',
  maxEventLoopDelayMs: 'MAX_EVENT_LOOP_DELAY_MS',
  maxHeapUsedBytes: 'MAX_HEAP_USED_BYTES',
  httpRequestTimeoutMs: 'HTTP_REQUEST_TIMEOUT_MS',
  httpHeadersTimeoutMs: 'HTTP_HEADERS_TIMEOUT_MS',
  httpIdleTimeoutMs: 'HTTP_IDLE_TIMEOUT_MS',
  httpKeepAliveTimeoutMs: 'HTTP_KEEP_ALIVE_TIMEOUT_MS',
  httpTimeoutCheckIntervalMs: 'HTTP_TIMEOUT_CHECK_INTERVAL_MS',
  multipartStallTimeoutMs: 'MULTIPART_STALL_TIMEOUT_MS',
  refusedBodyDrainBytes: 'REFUSED_BODY_DRAIN_BYTES',
  refusedBodyDrainMs: 'REFUSED_BODY_DRAIN_MS',
  minImageSide: 'MIN_IMAGE_SIDE',
  maxAspectRatio: 'MAX_ASPECT_RATIO',
  uploadCheck: 'UPLOAD_CHECK',
  maxBatchItems: 'MAX_BATCH_ITEMS',
  maxBatchBytes: 'MAX_BATCH_BYTES',
  maxArchiveUncompressedBytes: 'MAX_ARCHIVE_UNCOMPRESSED_BYTES',
  maxArchiveRatio: 'MAX_ARCHIVE_RATIO',
  webhookSecret: 'WEBHOOK_SECRET',
  webhookAllowPrivate: 'WEBHOOK_ALLOW_PRIVATE',
  webhookAttempts: 'WEBHOOK_ATTEMPTS',
  webhookBackoffMs: 'WEBHOOK_BACKOFF_MS',
  webhookTimeoutMs: 'WEBHOOK_TIMEOUT_MS',
  ...STORAGE_ENV,
  resultRedirect: 'RESULT_REDIRECT',
  presignExpiresSeconds: 'PRESIGN_EXPIRES_SECONDS',
  partialUploadMaxAgeSeconds: 'PARTIAL_UPLOAD_MAX_AGE_SECONDS',
} as const;

export function loadGatewayConfig(
  opts: { env?: Record<string, string | undefined>; overrides?: Partial<GatewayConfig> } = {},
): Readonly<GatewayConfig> {
  const env = opts.env ?? process.env;
  const config = loadConfig({
    app: 'gateway',
    schema: GatewayConfigSchema,
    envNames: GATEWAY_ENV,
    env,
    file: env.GATEWAY_CONFIG,
    overrides: opts.overrides,
  });
  if (config.retryAfterMinSeconds > config.retryAfterMaxSeconds) {
    throw new ConfigError('gateway', [
      `setting RETRY_AFTER_MIN_SECONDS (${config.retryAfterMinSeconds}) must not exceed RETRY_AFTER_MAX_SECONDS (${config.retryAfterMaxSeconds})`,
    ]);
  }
  if (config.httpRequestTimeoutMs > 0 && config.httpHeadersTimeoutMs > config.httpRequestTimeoutMs) {
    throw new ConfigError('gateway', [
      `setting HTTP_HEADERS_TIMEOUT_MS (${config.httpHeadersTimeoutMs}) must not exceed HTTP_REQUEST_TIMEOUT_MS (${config.httpRequestTimeoutMs})`,
    ]);
  }
  const badHosts = config.allowedHosts.filter(
    (h) => h.trim() !== '*' && (/[/@]/.test(h) || hostName(h.trim().replace(/^\./, '')) === undefined),
  );
  if (badHosts.length) {
    throw new ConfigError('gateway', [
      `setting ALLOWED_HOSTS must list host names (photos.example.com), domains (.example.com) or *; received ${JSON.stringify(badHosts)}`,
    ]);
  }
  const storageProblems = storageSettingProblems(config);
  if (config.resultRedirect === 'presigned' && parseStorageUrlSafe(config) !== 's3')
    storageProblems.push('RESULT_REDIRECT=presigned needs object storage (STORAGE_URL=s3://BUCKET/PREFIX)');
  if (storageProblems.length)
    throw new ConfigError(
      'gateway',
      storageProblems.map((p) => `setting ${p}`),
    );
  const badOrigins = config.corsOrigins.filter(
    (o) => o.trim() !== '*' && !(o.trim() === 'none' && config.corsOrigins.length === 1) && !/^https?:\/\/[^/\s]+$/.test(o.trim()),
  );
  if (badOrigins.length) {
    throw new ConfigError('gateway', [
      `setting CORS_ORIGINS must be *, none, or a comma list of origins such as https://app.example.com (scheme, host, optional port; no path); received ${JSON.stringify(badOrigins)}`,
    ]);
  }
  const withKeys = withKeyFile(config, env.API_KEYS ? 'API_KEYS (environment)' : 'API_KEYS');
  return Object.freeze({ ...withKeys, redis: opts.overrides?.redis ?? redisTarget(config) });
}

function redisTarget(settings: Parameters<typeof parseRedisTarget>[0]): RedisTarget {
  try {
    return parseRedisTarget(settings);
  } catch (err) {
    if (err instanceof RedisConfigError) throw new ConfigError('gateway', err.problems);
    throw err;
  }
}

/** Validate every key (naming where it came from, never quoting it) and add the keys of API_KEYS_FILE. */
function withKeyFile<C extends Pick<GatewayConfig, 'apiKeys' | 'apiKeysFile'>>(config: Readonly<C>, envLabel: string): Readonly<C> {
  const problems: string[] = [];
  const all = [...config.apiKeys];
  config.apiKeys.forEach((k, i) => {
    const e = parseKeyEntry(k);
    if (typeof e === 'string') problems.push(`setting ${envLabel}, entry ${i + 1}: ${e}`);
  });
  if (config.apiKeysFile) {
    let text: string | undefined;
    try {
      text = readFileSync(config.apiKeysFile, 'utf8');
    } catch (err) {
      problems.push(
        `setting API_KEYS_FILE: cannot read ${config.apiKeysFile} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); give the path of a readable file with one key per line`,
      );
    }
    for (const { line, entry } of text !== undefined ? keyFileEntries(text) : []) {
      const e = parseKeyEntry(entry);
      if (typeof e === 'string') problems.push(`setting API_KEYS_FILE: ${config.apiKeysFile} line ${line}: ${e}`);
      else all.push(entry);
    }
    if (text !== undefined && all.length === config.apiKeys.length && problems.length === 0) {
      problems.push(
        `setting API_KEYS_FILE: ${config.apiKeysFile} holds no key; put one key (or name:secret) per line, or unset API_KEYS_FILE`,
      );
    }
  }
  if (problems.length) throw new ConfigError('gateway', problems);
  if (all.length === config.apiKeys.length) return config;
  return { ...config, apiKeys: Object.freeze(all) as string[] };
}

function parseStorageUrlSafe(c: Pick<GatewayConfig, 'storageUrl' | 'storageDir'>): string | undefined {
  try {
    return parseStorageUrl(c.storageUrl, c.storageDir).kind;
  } catch {
    return undefined;
  }
}
