import { hostname } from 'node:os';
import { ConfigError, LogFormatSchema, LogLevelSchema, Type, loadConfig, parseBytes, type Static } from '@photoenhance/config';

const ProfileSchema = Type.Object(
  {
    name: Type.String({ minLength: 1, pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$' }),
    kind: Type.Optional(Type.Union([Type.Literal('resident'), Type.Literal('oneshot')])),
    command: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { minItems: 1 })),
    env: Type.Optional(Type.Record(Type.String(), Type.String())),
    cwd: Type.Optional(Type.String()),
    poolSize: Type.Optional(Type.Integer({ minimum: 1, maximum: 64 })),
    startupTimeoutMs: Type.Optional(Type.Integer({ minimum: 100 })),
    jobTimeoutMs: Type.Optional(Type.Integer({ minimum: 100 })),
    stopGraceMs: Type.Optional(Type.Integer({ minimum: 0 })),
    memoryLimitBytes: Type.Optional(Type.Union([Type.Integer({ minimum: 1 }), Type.String()])),
    softLimitRatio: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1 })),
    expectedMemoryBytes: Type.Optional(Type.Union([Type.Integer({ minimum: 0 }), Type.String()])),
    maxJobs: Type.Optional(Type.Integer({ minimum: 0 })),
    maxJobsJitter: Type.Optional(Type.Integer({ minimum: 0 })),
    idleTtlMs: Type.Optional(Type.Integer({ minimum: 0 })),
    memoryRetries: Type.Optional(Type.Integer({ minimum: 0, maximum: 10 })),
    cpuQuota: Type.Optional(Type.Number({ exclusiveMinimum: 0 })),
    maxOpenFiles: Type.Optional(Type.Integer({ minimum: 16 })),
    outputPattern: Type.Optional(Type.String()),
    /** GPU engines: the GPUs (nvidia-smi indexes) its processes may be pinned to, or "all". */
    gpus: Type.Optional(Type.Union([Type.Literal('all'), Type.Array(Type.Integer({ minimum: 0 }), { minItems: 1 })])),
    expectedGpuMemoryBytes: Type.Optional(Type.Union([Type.Integer({ minimum: 0 }), Type.String()])),
    gpuFloorBytes: Type.Optional(Type.Union([Type.Integer({ minimum: 0 }), Type.String()])),
    gpuMemoryLimitBytes: Type.Optional(Type.Union([Type.Integer({ minimum: 1 }), Type.String()])),
  },
  { additionalProperties: false },
);
export type ProfileInput = Static<typeof ProfileSchema>;

export const WorkerConfigSchema = Type.Object({
  redisUrl: Type.String({ minLength: 1 }),
  storageDir: Type.String({ default: './var/storage', minLength: 1 }),
  hostId: Type.String({ default: `${hostname()}-${process.pid}`, minLength: 1 }),
  /** Engine profiles (config file): built-ins are overridden field by field; new names add engines. */
  engines: Type.Array(ProfileSchema, { default: [] }),
  /** Which engines this host runs (profile names). Default: those in `engines`, or `classic` when there are none. */
  run: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { minItems: 1 })),
  heartbeatMs: Type.Integer({ default: 2000, minimum: 100 }),
  admissionMinAvailable: Type.Optional(Type.Union([Type.Integer({ minimum: 0 }), Type.String()])),
  admissionMaxUsedRatio: Type.Number({ default: 0.8, exclusiveMinimum: 0, maximum: 1 }),
  admissionMaxPressure: Type.Number({ default: 10, minimum: 0, maximum: 100 }),
  admissionCheckMs: Type.Integer({ default: 1000, minimum: 50 }),
  /** A job fetched while holding goes back to the queue (for other hosts) after this delay. */
  holdRequeueMs: Type.Integer({ default: 1000, minimum: 10 }),
  enforcement: Type.Union([Type.Literal('auto'), Type.Literal('cgroup-v2'), Type.Literal('cgroup-v1'), Type.Literal('watchdog')], { default: 'auto' }),
  startFailureLimit: Type.Integer({ default: 3, minimum: 1 }),
  /** Time given to running jobs at shutdown before engines are stopped. */
  shutdownGraceMs: Type.Integer({ default: 30_000, minimum: 0 }),
  /** GPU admission and placement for engines with `gpus`: auto (on when nvidia-smi lists GPUs) or off. */
  gpu: Type.Union([Type.Literal('auto'), Type.Literal('off')], { default: 'auto' }),
  /** nvidia-smi to sample GPUs with. */
  nvidiaSmi: Type.String({ default: 'nvidia-smi', minLength: 1 }),
  /** Added to an engine's expected GPU footprint for its default GPU floor (bytes or a size such as 512MiB). */
  gpuMarginBytes: Type.Optional(Type.Union([Type.Integer({ minimum: 0 }), Type.String()])),
  logLevel: LogLevelSchema,
  /** auto: pretty on a terminal, JSON lines otherwise; json or pretty force one. */
  logFormat: LogFormatSchema,
});
export type WorkerConfig = Static<typeof WorkerConfigSchema>;

export const WORKER_ENV = {
  redisUrl: 'REDIS_URL',
  storageDir: 'STORAGE_DIR',
  hostId: 'HOST_ID',
  run: 'WORKER_ENGINES',
  heartbeatMs: 'HEARTBEAT_MS',
  admissionMinAvailable: 'ADMISSION_MIN_AVAILABLE',
  admissionMaxUsedRatio: 'ADMISSION_MAX_USED_RATIO',
  admissionMaxPressure: 'ADMISSION_MAX_PRESSURE',
  admissionCheckMs: 'ADMISSION_CHECK_MS',
  holdRequeueMs: 'HOLD_REQUEUE_MS',
  enforcement: 'ENFORCEMENT',
  startFailureLimit: 'START_FAILURE_LIMIT',
  shutdownGraceMs: 'SHUTDOWN_GRACE_MS',
  gpu: 'GPU_GOVERNANCE',
  nvidiaSmi: 'NVIDIA_SMI',
  gpuMarginBytes: 'GPU_MARGIN',
  logLevel: 'LOG_LEVEL',
  logFormat: 'LOG_FORMAT',
} as const;

export function loadWorkerConfig(opts: { env?: Record<string, string | undefined>; overrides?: Partial<WorkerConfig> } = {}): Readonly<WorkerConfig> {
  const env = { ...(opts.env ?? process.env) };
  // ADMISSION_MIN_AVAILABLE accepts sizes like 4GiB.
  if (env.ADMISSION_MIN_AVAILABLE && !/^\d+$/.test(env.ADMISSION_MIN_AVAILABLE.trim())) {
    try {
      env.ADMISSION_MIN_AVAILABLE = String(parseBytes(env.ADMISSION_MIN_AVAILABLE));
    } catch {
      // left as is: the schema check names the setting
    }
  }
  const config = loadConfig({ app: 'worker', schema: WorkerConfigSchema, envNames: WORKER_ENV, env, file: env.WORKER_CONFIG, overrides: opts.overrides });
  // GPU_MARGIN accepts sizes like 512MiB, from the environment or the file.
  if (typeof config.gpuMarginBytes === 'string') {
    try {
      return { ...config, gpuMarginBytes: parseBytes(config.gpuMarginBytes) };
    } catch (err) {
      throw new ConfigError('worker', [`setting GPU_MARGIN (gpuMarginBytes): ${(err as Error).message}`]);
    }
  }
  return config;
}
