/** What each worker host publishes (heartbeat) and GET /v1/system shows. */

export type EnforcementMode = 'cgroup-v2' | 'cgroup-v1' | 'watchdog';
export type EngineProcessStatus = 'starting' | 'idle' | 'busy' | 'stopping';
export type AdmissionStatus = 'admitting' | 'holding';

export interface EngineProcessState {
  profile: string;
  pid: number | undefined;
  state: EngineProcessStatus;
  rssBytes: number;
  limitBytes: number;
  peakBytes: number;
  jobsDone: number;
  startedAt: number;
  uptimeMs: number;
  enforcement: EnforcementMode;
  /** GPU hosts: the GPU this process is pinned to (CUDA_VISIBLE_DEVICES) and the GPU memory its process tree holds. */
  gpu?: { index: number; uuid: string; usedBytes: number };
}

/** One GPU as nvidia-smi reports it. */
export interface GpuInfo {
  index: number;
  uuid: string;
  name: string;
  totalBytes: number;
  usedBytes: number;
  freeBytes: number;
  /** utilization.gpu in percent; absent where the board does not report it. */
  utilizationPercent?: number;
}

/** A process holding GPU memory (nvidia-smi --query-compute-apps). */
export interface GpuProcess {
  pid: number;
  gpuUuid: string;
  usedBytes: number;
}

/** The GPU part of a host's state. `state: off` = no GPU or driver (GPU governance off); `error` = sampling failing. */
export interface HostGpus {
  state: 'on' | 'off' | 'error' | 'unknown';
  reason: string;
  gpus: GpuInfo[];
  /** When the figures were read, and what reading them cost (ms). */
  sampledAt?: number;
  sampleCostMs?: number;
}

export interface HostMemory {
  totalBytes: number;
  availableBytes: number;
  usedRatio: number;
  /** `some avg10` of /proc/pressure/memory, in percent; absent where PSI is not available. */
  pressureSome10?: number;
}

export interface AdmissionTransition {
  at: number;
  state: AdmissionStatus;
  reason: string;
  /** Holding: what held it, in words (e.g. GPU_MEMORY_LOW names the GPU and its figures). */
  detail?: string;
  memory: HostMemory;
}

export interface AdmissionState {
  state: AdmissionStatus;
  /** Why holding (e.g. MEMORY_AVAILABLE_LOW, MEMORY_USED_HIGH, MEMORY_PRESSURE_HIGH, ENGINE_START_FAILED, GPU_MEMORY_LOW,
   * GPU_UNAVAILABLE); `ok` when admitting. */
  reason: string;
  detail?: string;
  since: number;
  thresholds: { minAvailableBytes: number; maxUsedRatio: number; maxPressureSome10: number };
}

export interface EngineOffer {
  name: string;
  kind: 'resident' | 'oneshot';
  poolSize: number;
  version?: string;
  capabilities?: { options: string[]; scales: number[]; formats: string[] };
  memoryLimitBytes: number;
  expectedMemoryBytes: number;
}

export interface HostState {
  hostId: string;
  hostname: string;
  pid: number;
  startedAt: number;
  updatedAt: number;
  engines: EngineOffer[];
  admission: AdmissionState;
  memory: HostMemory;
  enforcement: { mode: EnforcementMode; reason: string };
  processes: EngineProcessState[];
  recycles: Record<string, number>;
  /** The most recent recycles and kills (newest last, at most 50), with their reasons. */
  recycleEvents?: RecycleEvent[];
  transitions: AdmissionTransition[];
  /** GPU hosts (absent on hosts without the GPU parts). */
  gpu?: HostGpus;
}

export interface RecycleEvent {
  at: number;
  profile: string;
  pid?: number;
  reason: string;
  detail?: string;
  rssBytes?: number;
  limitBytes?: number;
}
