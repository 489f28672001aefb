import { readFileSync } from 'node:fs';
import { ConfigError, LogFormatSchema, LogLevelSchema, Type, loadConfig, type Static } from '@photoenhance/config';
import { keyFileEntries, parseKeyEntry } from './auth/keyring.js';
import { hostName } from './auth/hosts.js';

export const GatewayConfigSchema = Type.Object({
  host: Type.String({ default: '127.0.0.1', minLength: 1, description: 'Address to bind; loopback by default.' }),
  port: Type.Integer({ default: 8080, minimum: 0, maximum: 65535 }),
  publicUrl: Type.Optional(Type.String({ description: 'Base URL used in links (default: relative links).' })),
  redisUrl: Type.String({ minLength: 1, description: 'redis://host:port, unix:///path or a socket path.' }),
  storageDir: Type.String({ default: './var/storage', minLength: 1 }),
  maxUploadBytes: Type.Integer({ default: 50 * 1024 * 1024, minimum: 1024 }),
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
  jobBackoffMs: Type.Integer({ default: 2000, minimum: 0 }),
  jobTtlSeconds: Type.Integer({ default: 86_400, minimum: 1 }),
  sweepIntervalMs: Type.Integer({ default: 60_000, minimum: 100 }),
  logLevel: LogLevelSchema,
  /** auto: pretty on a terminal, JSON lines otherwise; json or pretty force one. */
  logFormat: LogFormatSchema,
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
});
export type GatewayConfig = Static<typeof GatewayConfigSchema>;

export const GATEWAY_ENV = {
  host: 'HOST',
  port: 'PORT',
  publicUrl: 'PUBLIC_URL',
  redisUrl: 'REDIS_URL',
  storageDir: 'STORAGE_DIR',
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
  maxBatchItems: 'MAX_BATCH_ITEMS',
  maxBatchBytes: 'MAX_BATCH_BYTES',
  maxArchiveUncompressedBytes: 'MAX_ARCHIVE_UNCOMPRESSED_BYTES',
  maxArchiveRatio: 'MAX_ARCHIVE_RATIO',
  webhookSecret: 'WEBHOOK_SECRET',
  webhookAllowPrivate: 'WEBHOOK_ALLOW_PRIVATE',
  webhookAttempts: 'WEBHOOK_ATTEMPTS',
  webhookBackoffMs: 'WEBHOOK_BACKOFF_MS',
  webhookTimeoutMs: 'WEBHOOK_TIMEOUT_MS',
} as const;

export function loadGatewayConfig(opts: { env?: Record<string, string | undefined>; overrides?: Partial<GatewayConfig> } = {}): Readonly<GatewayConfig> {
  const env = opts.env ?? process.env;
  const config = loadConfig({ app: 'gateway', schema: GatewayConfigSchema, envNames: GATEWAY_ENV, env, file: env.GATEWAY_CONFIG, overrides: opts.overrides });
  if (config.retryAfterMinSeconds > config.retryAfterMaxSeconds) {
    throw new ConfigError('gateway', [`setting RETRY_AFTER_MIN_SECONDS (${config.retryAfterMinSeconds}) must not exceed RETRY_AFTER_MAX_SECONDS (${config.retryAfterMaxSeconds})`]);
  }
  const badHosts = config.allowedHosts.filter((h) => h.trim() !== '*' && (/[/@]/.test(h) || hostName(h.trim().replace(/^\./, '')) === undefined));
  if (badHosts.length) {
    throw new ConfigError('gateway', [`setting ALLOWED_HOSTS must list host names (photos.example.com), domains (.example.com) or *; received ${JSON.stringify(badHosts)}`]);
  }
  const badOrigins = config.corsOrigins.filter((o) => o.trim() !== '*' && !(o.trim() === 'none' && config.corsOrigins.length === 1) && !/^https?:\/\/[^/\s]+$/.test(o.trim()));
  if (badOrigins.length) {
    throw new ConfigError('gateway', [`setting CORS_ORIGINS must be *, none, or a comma list of origins such as https://app.example.com (scheme, host, optional port; no path); received ${JSON.stringify(badOrigins)}`]);
  }
  return withKeyFile(config, env.API_KEYS ? 'API_KEYS (environment)' : 'API_KEYS');
}

/** Validate every key (naming where it came from, never quoting it) and add the keys of API_KEYS_FILE. */
function withKeyFile(config: Readonly<GatewayConfig>, envLabel: string): Readonly<GatewayConfig> {
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
      problems.push(`setting API_KEYS_FILE: cannot read ${config.apiKeysFile} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); give the path of a readable file with one key per line`);
    }
    for (const { line, entry } of text !== undefined ? keyFileEntries(text) : []) {
      const e = parseKeyEntry(entry);
      if (typeof e === 'string') problems.push(`setting API_KEYS_FILE: ${config.apiKeysFile} line ${line}: ${e}`);
      else all.push(entry);
    }
    if (text !== undefined && all.length === config.apiKeys.length && problems.length === 0) {
      problems.push(`setting API_KEYS_FILE: ${config.apiKeysFile} holds no key; put one key (or name:secret) per line, or unset API_KEYS_FILE`);
    }
  }
  if (problems.length) throw new ConfigError('gateway', problems);
  if (all.length === config.apiKeys.length) return config;
  return Object.freeze({ ...config, apiKeys: Object.freeze(all) as string[] });
}
