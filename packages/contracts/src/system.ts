import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';

/**
 * What each worker host publishes (heartbeat) and GET /v1/system shows: one schema per shape, the types derived from
 * them, the same schemas in the OpenAPI document. Objects allow additional properties: a newer worker may publish more
 * than an older gateway knows.
 */

const lit = <T extends string>(values: readonly T[]) => Type.Union(values.map((v) => Type.Literal(v)));
const open = { additionalProperties: true } as const;

export const ENFORCEMENT_MODES = ['cgroup-v2', 'cgroup-v1', 'watchdog'] as const;
export type EnforcementMode = (typeof ENFORCEMENT_MODES)[number];
export const ENGINE_PROCESS_STATUSES = ['starting', 'idle', 'busy', 'stopping'] as const;
export type EngineProcessStatus = (typeof ENGINE_PROCESS_STATUSES)[number];
export const ADMISSION_STATUSES = ['admitting', 'holding'] as const;
export type AdmissionStatus = (typeof ADMISSION_STATUSES)[number];

export const EngineProcessStateSchema = Type.Object(
  {
    profile: Type.String(),
    /** Absent while the process is being spawned. */
    pid: Type.Optional(Type.Integer()),
    state: lit(ENGINE_PROCESS_STATUSES),
    rssBytes: Type.Integer(),
    limitBytes: Type.Integer(),
    peakBytes: Type.Integer(),
    jobsDone: Type.Integer(),
    startedAt: Type.Number(),
    uptimeMs: Type.Integer(),
    enforcement: lit(ENFORCEMENT_MODES),
    /** GPU hosts: the GPU this process is pinned to (CUDA_VISIBLE_DEVICES) and the GPU memory its process tree holds. */
    gpu: Type.Optional(Type.Object({ index: Type.Integer(), uuid: Type.String(), usedBytes: Type.Integer() })),
  },
  open,
);
export type EngineProcessState = Static<typeof EngineProcessStateSchema>;

/** One GPU as nvidia-smi reports it. */
export const GpuInfoSchema = Type.Object(
  {
    index: Type.Integer(),
    uuid: Type.String(),
    name: Type.String(),
    totalBytes: Type.Integer(),
    usedBytes: Type.Integer(),
    freeBytes: Type.Integer(),
    /** utilization.gpu in percent; absent where the board does not report it. */
    utilizationPercent: Type.Optional(Type.Number()),
  },
  open,
);
export type GpuInfo = Static<typeof GpuInfoSchema>;

/** A process holding GPU memory (nvidia-smi --query-compute-apps). */
export const GpuProcessSchema = Type.Object({ pid: Type.Integer(), gpuUuid: Type.String(), usedBytes: Type.Integer() });
export type GpuProcess = Static<typeof GpuProcessSchema>;

/** The GPU part of a host's state. `state: off` = no GPU or driver (GPU governance off); `error` = sampling failing. */
export const HostGpusSchema = Type.Object(
  {
    state: lit(['on', 'off', 'error', 'unknown'] as const),
    reason: Type.String(),
    gpus: Type.Array(GpuInfoSchema),
    /** When the figures were read, and what reading them cost (ms). */
    sampledAt: Type.Optional(Type.Number()),
    sampleCostMs: Type.Optional(Type.Number()),
  },
  open,
);
export type HostGpus = Static<typeof HostGpusSchema>;

export const HostMemorySchema = Type.Object(
  {
    totalBytes: Type.Integer(),
    availableBytes: Type.Integer(),
    usedRatio: Type.Number(),
    /** `some avg10` of /proc/pressure/memory, in percent; absent where PSI is not available. */
    pressureSome10: Type.Optional(Type.Number()),
  },
  open,
);
export type HostMemory = Static<typeof HostMemorySchema>;

export const AdmissionTransitionSchema = Type.Object(
  {
    at: Type.Number(),
    state: lit(ADMISSION_STATUSES),
    reason: Type.String(),
    /** Holding: what held it, in words (e.g. GPU_MEMORY_LOW names the GPU and its figures). */
    detail: Type.Optional(Type.String()),
    memory: HostMemorySchema,
  },
  open,
);
export type AdmissionTransition = Static<typeof AdmissionTransitionSchema>;

export const AdmissionStateSchema = Type.Object(
  {
    state: lit(ADMISSION_STATUSES),
    /** Why holding (e.g. MEMORY_AVAILABLE_LOW, MEMORY_USED_HIGH, MEMORY_PRESSURE_HIGH, ENGINE_START_FAILED, GPU_MEMORY_LOW,
     * GPU_UNAVAILABLE); `ok` when admitting. */
    reason: Type.String(),
    detail: Type.Optional(Type.String()),
    since: Type.Number(),
    thresholds: Type.Object({ minAvailableBytes: Type.Integer(), maxUsedRatio: Type.Number(), maxPressureSome10: Type.Number() }),
  },
  open,
);
export type AdmissionState = Static<typeof AdmissionStateSchema>;

export const EngineOfferSchema = Type.Object(
  {
    name: Type.String(),
    kind: lit(['resident', 'oneshot'] as const),
    poolSize: Type.Integer(),
    version: Type.Optional(Type.String()),
    capabilities: Type.Optional(
      Type.Object({ options: Type.Array(Type.String()), scales: Type.Array(Type.Number()), formats: Type.Array(Type.String()) }),
    ),
    memoryLimitBytes: Type.Integer(),
    expectedMemoryBytes: Type.Integer(),
  },
  open,
);
export type EngineOffer = Static<typeof EngineOfferSchema>;

export const RecycleEventSchema = Type.Object(
  {
    at: Type.Number(),
    profile: Type.String(),
    pid: Type.Optional(Type.Integer()),
    reason: Type.String(),
    detail: Type.Optional(Type.String()),
    rssBytes: Type.Optional(Type.Integer()),
    limitBytes: Type.Optional(Type.Integer()),
  },
  open,
);
export type RecycleEvent = Static<typeof RecycleEventSchema>;

export const HostStateSchema = Type.Object(
  {
    hostId: Type.String(),
    hostname: Type.String(),
    pid: Type.Integer(),
    startedAt: Type.Number(),
    updatedAt: Type.Number(),
    engines: Type.Array(EngineOfferSchema),
    admission: AdmissionStateSchema,
    memory: HostMemorySchema,
    enforcement: Type.Object({ mode: lit(ENFORCEMENT_MODES), reason: Type.String() }),
    processes: Type.Array(EngineProcessStateSchema),
    recycles: Type.Record(Type.String(), Type.Integer()),
    /** The most recent recycles and kills (newest last, at most 50), with their reasons. */
    recycleEvents: Type.Optional(Type.Array(RecycleEventSchema)),
    transitions: Type.Array(AdmissionTransitionSchema),
    /** GPU hosts (absent on hosts without the GPU parts). */
    gpu: Type.Optional(HostGpusSchema),
  },
  open,
);
export type HostState = Static<typeof HostStateSchema>;

/** Where a published host state departs from the schema, as `path: message` lines (none: it conforms). */
export function hostStateErrors(value: unknown): string[] {
  return [...Value.Errors(HostStateSchema, value)].map((e) => `${e.path}: ${e.message}`);
}
