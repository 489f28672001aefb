import { Type, loadConfig, type Static } from '@photoenhance/config';

export const GatewayConfigSchema = Type.Object({
  host: Type.String({ default: '127.0.0.1', minLength: 1, description: 'Address to bind; loopback by default.' }),
  port: Type.Integer({ default: 8080, minimum: 0, maximum: 65535 }),
  publicUrl: Type.Optional(Type.String({ description: 'Base URL used in links (default: relative links).' })),
  redisUrl: Type.String({ minLength: 1, description: 'redis://host:port, unix:///path or a socket path.' }),
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
  logLevel: Type.Union(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)), { default: 'info' }),
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
  jobAttempts: 'JOB_ATTEMPTS',
  jobBackoffMs: 'JOB_BACKOFF_MS',
  jobTtlSeconds: 'JOB_TTL_SECONDS',
  sweepIntervalMs: 'SWEEP_INTERVAL_MS',
  logLevel: 'LOG_LEVEL',
} as const;

export function loadGatewayConfig(opts: { env?: Record<string, string | undefined>; overrides?: Partial<GatewayConfig> } = {}): Readonly<GatewayConfig> {
  const env = { ...(opts.env ?? process.env) };
  // KNOWN_ENGINES may be a plain comma list.
  if (env.KNOWN_ENGINES && !env.KNOWN_ENGINES.trim().startsWith('[')) env.KNOWN_ENGINES = JSON.stringify(env.KNOWN_ENGINES.split(',').map((s) => s.trim()).filter(Boolean));
  return loadConfig({ app: 'gateway', schema: GatewayConfigSchema, envNames: GATEWAY_ENV, env, file: env.GATEWAY_CONFIG, overrides: opts.overrides });
}
