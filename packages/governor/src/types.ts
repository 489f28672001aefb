import type { Logger } from 'pino';
import type { RecycleInfo } from './recycle-policy.js';
import type {
  AdmissionState,
  AdmissionTransition,
  DoneMessage,
  EngineOffer,
  EngineProcessState,
  EnforcementMode,
  ErrorCode,
  HostGpus,
  HostMemory,
  JobOptions,
} from '@photoenhance/contracts';

/** One engine as an operator configures it. Defaults live in `defaultProfile()` (profile.ts). */
export interface EngineProfile {
  name: string;
  /** resident: one long-lived process speaks the engine protocol. oneshot: one process per job from an argv template. */
  kind: 'resident' | 'oneshot';
  /** argv: [executable, ...args]. Never a shell string. For oneshot, args may hold {input} {output} {outputDir} {scale} {version} {bgTile} {weight} {quality} {format}. */
  command: string[];
  env: Record<string, string>;
  cwd?: string;
  /** Engine processes of this profile on this host (= jobs of this engine run at once). Default 1. */
  poolSize: number;
  /** Dynamic batching, for engines whose ready declares batch: at most this many jobs per request (operator cap). */
  maxBatch?: number;
  /** Dynamic batching: wait at most this long for more jobs before sending a smaller batch (overrides the engine's). */
  maxQueueDelayMs?: number;
  /** Default 120 000. */
  startupTimeoutMs: number;
  /** Default 600 000; past it the job fails with ENGINE_TIMEOUT and the process is replaced. */
  jobTimeoutMs: number;
  /** SIGTERM → SIGKILL grace. Default 5 000. */
  stopGraceMs: number;
  /** Hard limit per engine process tree. Default 8 GiB. */
  memoryLimitBytes: number;
  /** Between jobs, recycle an engine whose RSS passed this fraction of the limit. Default 0.75. */
  softLimitRatio: number;
  /** Expected footprint, for admission before spawning. Default 1 GiB. */
  expectedMemoryBytes: number;
  /** Recycle after this many jobs (0 = never), ± jitter jobs. */
  maxJobs: number;
  maxJobsJitter: number;
  /** Stop an idle engine after this long (0 = never). Default 300 000. */
  idleTtlMs: number;
  /** Retries allowed after ENGINE_MEMORY_LIMIT, counted apart from other retries. Default 1. */
  memoryRetries: number;
  /** CPU quota in cores via the cgroup where available. */
  cpuQuota?: number;
  /** RLIMIT_NOFILE for the engine process. */
  maxOpenFiles?: number;
  /** oneshot only: where the output appears: a path template or a glob inside {outputDir}. Default "{output}". */
  outputPattern?: string;
  /** GPU engines only (resident): the GPUs (nvidia-smi indexes) its processes may be pinned to, or "all". Unset: not
   * a GPU engine (no GPU admission or placement). */
  gpus?: number[] | 'all';
  /** GPU memory one process is expected to take (models + a job's activations). Default 2 GiB. */
  expectedGpuMemoryBytes?: number;
  /** Free GPU memory needed to start a process or take a job. Default expectedGpuMemoryBytes + the GPU margin. */
  gpuFloorBytes?: number;
  /** GPU memory limit per process tree (default none), read from nvidia-smi's compute apps at each GPU sample. Like
   * memoryLimitBytes: between jobs, a process holding more than softLimitRatio of it is recycled ("gpu-soft-limit");
   * in hard mode (the default) a process holding more than the limit itself is killed at once, mid-job or not, and its
   * job fails with ENGINE_GPU_MEMORY_LIMIT ("gpu-memory-limit"). */
  gpuMemoryLimitBytes?: number;
  /** hard (default): kill above gpuMemoryLimitBytes and recycle between jobs above the soft mark; soft: only recycle
   * between jobs (a job in flight is never killed for GPU memory). */
  gpuMemoryLimitMode?: 'hard' | 'soft';
}

export interface AdmissionConfig {
  /** Floor of MemAvailable; default max(2 GiB, largest expectedMemoryBytes). */
  minAvailableBytes?: number;
  /** Ceiling of used memory fraction; default 0.8. */
  maxUsedRatio: number;
  /** Ceiling of PSI `some avg10` (percent); default 10. */
  maxPressureSome10: number;
  /** Re-check interval while holding / sampling interval while admitting. Default 1 000. */
  checkIntervalMs: number;
}

export interface GovernorOptions {
  hostId: string;
  profiles: EngineProfile[];
  admission: AdmissionConfig;
  /** auto: cgroup v2 if writable, else v1 if writable, else watchdog only. */
  enforcement: 'auto' | EnforcementMode;
  /** For tests: a directory laid out like cgroupfs. */
  cgroupRoot?: string;
  /** Consecutive start failures before holding with ENGINE_START_FAILED. Default 3. */
  startFailureLimit: number;
  logger: Logger;
}

export interface RunRequest {
  id: string;
  input: string;
  output: string;
  options: JobOptions;
}

export interface RunHooks {
  /** Abort = cancel: the engine is told to cancel, and replaced if it does not stop in time. */
  signal?: AbortSignal;
  onProgress?(progress: number, stage?: string): void;
  /** Engine stderr lines and protocol log messages during this job. */
  onLog?(line: string): void;
}

export interface RunResult {
  done: DoneMessage;
  engine: { name: string; version: string; pid: number | undefined };
  /** waitMs: waiting for an engine (admission, start-up); runMs: the engine working on the job; batchWaitMs (batched
   * engines): of waitMs, the time an idle engine was held back to fill the batch (bounded by maxQueueDelayMs). */
  timings: { waitMs: number; runMs: number; batchWaitMs?: number };
}

/** A failed attempt, with a catalogue code. `retryable: false` means another attempt cannot help. */
export class EngineJobError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly details: Record<string, unknown>;
  constructor(code: ErrorCode, message: string, opts: { retryable?: boolean; details?: Record<string, unknown>; cause?: unknown } = {}) {
    super(message, { cause: opts.cause });
    this.name = 'EngineJobError';
    this.code = code;
    this.retryable = opts.retryable ?? true;
    this.details = opts.details ?? {};
  }
}

export interface GovernorSnapshot {
  admission: AdmissionState;
  memory: HostMemory;
  enforcement: { mode: EnforcementMode; reason: string };
  engines: EngineOffer[];
  processes: EngineProcessState[];
  recycles: Record<string, number>;
  transitions: AdmissionTransition[];
  /** Present when the governor was given GPU options. */
  gpu?: HostGpus;
}

/**
 * The governor's public face, as the worker uses it.
 * Events: 'admission' (AdmissionState) on every admitting ↔ holding transition; 'recycle' (RecycleInfo, recycle-policy.ts).
 */
export interface GovernorApi {
  start(): Promise<void>;
  run(profile: string, req: RunRequest, hooks?: RunHooks): Promise<RunResult>;
  admitting(): boolean;
  snapshot(): GovernorSnapshot;
  close(): Promise<void>;
  on(event: 'admission', listener: (state: AdmissionState) => void): this;
  on(event: 'recycle', listener: (info: RecycleInfo) => void): this;
}
