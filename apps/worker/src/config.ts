import { hostname } from 'node:os';
import { Bytes, ConfigError, Duration, LogFormatSchema, LogLevelSchema, Type, loadConfig, type StaticDecode } from '@photoenhance/config';
import { ADMISSION_BOUNDS } from '@photoenhance/contracts';
import { STORAGE_ENV, storageSettingProblems } from '@photoenhance/storage';
import { REDIS_ENV, RedisConfigError, parseRedisTarget, type RedisTarget } from '@photoenhance/queue';

const ProfileSchema = Type.Object(
  {
    name: Type.String({ minLength: 1, pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$' }),
    kind: Type.Optional(Type.Union([Type.Literal('resident'), Type.Literal('oneshot')])),
    command: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { minItems: 1 })),
    env: Type.Optional(Type.Record(Type.String(), Type.String())),
    cwd: Type.Optional(Type.String()),
    poolSize: Type.Optional(Type.Integer({ minimum: 1, maximum: 64 })),
    /** Engines that take batches (their ready declares batch): cap on jobs per request, and the longest wait for more. */
    maxBatch: Type.Optional(Type.Integer({ minimum: 1, maximum: 256 })),
    maxQueueDelayMs: Type.Optional(Duration({ minimum: 0, maximum: 10_000 })),
    startupTimeoutMs: Type.Optional(Duration({ minimum: 100 })),
    jobTimeoutMs: Type.Optional(Duration({ minimum: 100 })),
    stopGraceMs: Type.Optional(Duration({ minimum: 0 })),
    memoryLimitBytes: Type.Optional(Bytes({ minimum: 1 })),
    softLimitRatio: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1 })),
    expectedMemoryBytes: Type.Optional(Bytes({ minimum: 0 })),
    maxJobs: Type.Optional(Type.Integer({ minimum: 0 })),
    maxJobsJitter: Type.Optional(Type.Integer({ minimum: 0 })),
    idleTtlMs: Type.Optional(Duration({ minimum: 0 })),
    memoryRetries: Type.Optional(Type.Integer({ minimum: 0, maximum: 10 })),
    cpuQuota: Type.Optional(Type.Number({ exclusiveMinimum: 0 })),
    maxOpenFiles: Type.Optional(Type.Integer({ minimum: 16 })),
    outputPattern: Type.Optional(Type.String()),
    /** GPU engines: the GPUs (nvidia-smi indexes) its processes may be pinned to, or "all". */
    gpus: Type.Optional(Type.Union([Type.Literal('all'), Type.Array(Type.Integer({ minimum: 0 }), { minItems: 1 })])),
    expectedGpuMemoryBytes: Type.Optional(Bytes({ minimum: 0 })),
    gpuFloorBytes: Type.Optional(Bytes({ minimum: 0 })),
    gpuMemoryLimitBytes: Type.Optional(Bytes({ minimum: 1 })),
    /** hard (default): kill above gpuMemoryLimitBytes (ENGINE_GPU_MEMORY_LIMIT); soft: only recycle between jobs. */
    gpuMemoryLimitMode: Type.Optional(Type.Union([Type.Literal('hard'), Type.Literal('soft')])),
  },
  { additionalProperties: false },
);
export type ProfileInput = StaticDecode<typeof ProfileSchema>;

export const WorkerConfigSchema = Type.Object({
  /** One Redis node; or Sentinel / Cluster below (docs/redis.md). */
  redisUrl: Type.Optional(Type.String({ minLength: 1 })),
  redisPassword: Type.Optional(Type.String({ minLength: 1 })),
  redisSentinels: Type.Optional(Type.Array(Type.String({ minLength: 1 }))),
  redisSentinelMaster: Type.Optional(Type.String({ minLength: 1 })),
  redisSentinelPassword: Type.Optional(Type.String({ minLength: 1 })),
  redisClusterNodes: Type.Optional(Type.Array(Type.String({ minLength: 1 }))),
  storageDir: Type.String({ default: './var/storage', minLength: 1 }),
  hostId: Type.String({ default: `${hostname()}-${process.pid}`, minLength: 1 }),
  /** Engine profiles (config file): built-ins are overridden field by field; new names add engines. */
  engines: Type.Array(ProfileSchema, { default: [] }),
  /** Which engines this host runs (profile names). Default: those in `engines`, or `classic` when there are none. */
  run: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { minItems: 1 })),
  heartbeatMs: Duration({ default: 2000, minimum: 100 }),
  admissionMinAvailable: Type.Optional(Bytes(ADMISSION_BOUNDS.minAvailableBytes)),
  admissionMaxUsedRatio: Type.Number({ default: 0.8, ...ADMISSION_BOUNDS.maxUsedRatio }),
  admissionMaxPressure: Type.Number({ default: 10, ...ADMISSION_BOUNDS.maxPressureSome10 }),
  admissionCheckMs: Duration({ default: 1000, minimum: 50 }),
  /** A job fetched while holding goes back to the queue (for other hosts) after this delay. */
  holdRequeueMs: Duration({ default: 1000, minimum: 10 }),
  /**
   * Jobs each engine process may hold ready (fetched, input staged, cancel state known) while it works, so it gets the
   * next one the moment it answers. Only a busy engine prefetches, and not while another host has a free engine for the
   * job; a prefetched job reads as queued in the API until its engine gets it. 0 turns prefetching off.
   */
  prefetch: Type.Integer({ default: 1, minimum: 0, maximum: 16 }),
  enforcement: Type.Union([Type.Literal('auto'), Type.Literal('cgroup-v2'), Type.Literal('cgroup-v1'), Type.Literal('watchdog')], {
    default: 'auto',
  }),
  startFailureLimit: Type.Integer({ default: 3, minimum: 1 }),
  /**
   * BullMQ job lock: a worker renews the locks of its running jobs every lockDurationMs/4 to /2 (BullMQ's renewal timer),
   * so a lock always has at least half its duration left; a worker that stops renewing (dead, frozen, cut off from
   * Redis) loses its jobs once the lock expires. The backstop of recovery; the heartbeat usually acts first.
   */
  lockDurationMs: Duration({ default: 10_000, minimum: 1_000 }),
  /** How often this worker runs BullMQ's stalled-job check (lock gone → job back to wait). */
  stalledIntervalMs: Duration({ default: 5_000, minimum: 100 }),
  /** A job whose worker died this many times is failed instead of run again (a job that kills its worker). */
  maxStalledCount: Type.Integer({ default: 1, minimum: 0 }),
  /** Time given to running jobs at shutdown before engines are stopped. */
  shutdownGraceMs: Duration({ default: 30_000, minimum: 0 }),
  /** GPU admission and placement for engines with `gpus`: auto (on when nvidia-smi lists GPUs) or off. */
  gpu: Type.Union([Type.Literal('auto'), Type.Literal('off')], { default: 'auto' }),
  /** nvidia-smi to sample GPUs with. */
  nvidiaSmi: Type.String({ default: 'nvidia-smi', minLength: 1 }),
  /** Added to an engine's expected GPU footprint for its default GPU floor (bytes or a size such as 512MiB). */
  gpuMarginBytes: Type.Optional(Bytes({ minimum: 0 })),
  logLevel: LogLevelSchema,
  // --- storage (issue 9): a folder (STORAGE_DIR) or S3-compatible object storage (STORAGE_URL=s3://BUCKET/PREFIX) ---
  storageUrl: Type.Optional(Type.String({ minLength: 1 })),
  s3Endpoint: Type.Optional(Type.String({ minLength: 1 })),
  s3ForcePathStyle: Type.Boolean({ default: false }),
  awsRegion: Type.Optional(Type.String({ minLength: 1 })),
  awsAccessKeyId: Type.Optional(Type.String({ minLength: 1 })),
  awsSecretAccessKey: Type.Optional(Type.String({ minLength: 1 })),
  storageCheckTimeoutMs: Duration({ default: 5000, minimum: 100, maximum: 60_000 }),
  /** Per-job temp folders the engines read and write (default: <STORAGE_DIR>/.staging, or the OS temp dir for S3). */
  stagingDir: Type.Optional(Type.String({ minLength: 1 })),
  /** A job whose storage is away after its last attempt waits this long and tries again (it is never failed for it). */
  storageRetryMs: Duration({ default: 5000, minimum: 10 }),
  /** auto: pretty on a terminal, JSON lines otherwise; json or pretty force one. */
  logFormat: LogFormatSchema,
});
export type WorkerConfig = StaticDecode<typeof WorkerConfigSchema> & {
  /** Where Redis is (one node, Sentinel or Cluster), parsed once from the REDIS_* settings. */
  readonly redis: RedisTarget;
};

export const WORKER_ENV = {
  ...REDIS_ENV,
  hostId: 'HOST_ID',
  run: 'WORKER_ENGINES',
  heartbeatMs: 'HEARTBEAT_MS',
  admissionMinAvailable: 'ADMISSION_MIN_AVAILABLE',
  admissionMaxUsedRatio: 'ADMISSION_MAX_USED_RATIO',
  admissionMaxPressure: 'ADMISSION_MAX_PRESSURE',
  admissionCheckMs: 'ADMISSION_CHECK_MS',
  holdRequeueMs: 'HOLD_REQUEUE_MS',
  prefetch: 'PREFETCH',
  enforcement: 'ENFORCEMENT',
  startFailureLimit: 'START_FAILURE_LIMIT',
  shutdownGraceMs: 'SHUTDOWN_GRACE_MS',
  gpu: 'GPU_GOVERNANCE',
  nvidiaSmi: 'NVIDIA_SMI',
  gpuMarginBytes: 'GPU_MARGIN',
  lockDurationMs: 'LOCK_DURATION_MS',
  stalledIntervalMs: 'STALLED_INTERVAL_MS',
  maxStalledCount: 'MAX_STALLED_COUNT',
  logLevel: 'LOG_LEVEL',
  ...STORAGE_ENV,
  stagingDir: 'STAGING_DIR',
  storageRetryMs: 'STORAGE_RETRY_MS',
  logFormat: 'LOG_FORMAT',
} as const;

export function loadWorkerConfig(
  opts: { env?: Record<string, string | undefined>; overrides?: Partial<WorkerConfig> } = {},
): Readonly<WorkerConfig> {
  const env = opts.env ?? process.env;
  const config = loadConfig({
    app: 'worker',
    schema: WorkerConfigSchema,
    envNames: WORKER_ENV,
    env,
    file: env.WORKER_CONFIG,
    overrides: opts.overrides,
  });
  const storageProblems = storageSettingProblems(config);
  if (storageProblems.length)
    throw new ConfigError(
      'worker',
      storageProblems.map((p) => `setting ${p}`),
    );
  let redis: RedisTarget;
  try {
    redis = opts.overrides?.redis ?? parseRedisTarget(config);
  } catch (err) {
    if (err instanceof RedisConfigError) throw new ConfigError('worker', err.problems);
    throw err;
  }
  return Object.freeze({ ...config, redis });
}
