import { Type, type Static } from '@sinclair/typebox';
import { INPUT_FORMATS, JobOptionsSchema, OUTPUT_FORMATS, type InputFormat, type JobOptions, type OutputFormat } from './options.js';
import { JobErrorSchema } from './errors.js';

export const JOB_STATUSES = ['queued', 'active', 'completed', 'failed', 'canceled'] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];

/** BullMQ's job states (Job.getState()), less "unknown". */
export type BullJobState = 'waiting' | 'prioritized' | 'delayed' | 'paused' | 'waiting-children' | 'active' | 'completed' | 'failed';

/**
 * The one BullMQ state -> public status mapping, as the BullMQ states behind each status (the dashboard's job list
 * reads them in this order). "canceled" has no BullMQ state: it is the gateway's tombstone.
 */
export const BULL_STATES_OF_STATUS: Readonly<Record<Exclude<JobStatus, 'canceled'>, readonly BullJobState[]>> = {
  // delayed includes retry backoff; paused: the queue is paused, the job still waits its turn.
  queued: ['waiting', 'prioritized', 'delayed', 'paused', 'waiting-children'],
  active: ['active'],
  completed: ['completed'],
  failed: ['failed'],
};

const STATUS_OF_BULL_STATE = new Map<string, JobStatus>(
  Object.entries(BULL_STATES_OF_STATUS).flatMap(([status, states]) => states.map((s) => [s, status as JobStatus] as const)),
);

/**
 * The public status of a job in this BullMQ state. "unknown" (between two of BullMQ's moves) reads as queued.
 * `atEngine`: for a BullMQ-active job, whether this attempt was handed to an engine. A worker fetches a job (BullMQ
 * "active") before its engine is free when it prefetches; until the engine gets it, the job is still queued: not
 * started, no startedAt, counted as queued (packages/queue/src/engine-start.ts reads and writes that mark).
 */
export function statusOfBullState(state: string, atEngine = true): JobStatus {
  const status = STATUS_OF_BULL_STATE.get(state) ?? 'queued';
  return status === 'active' && !atEngine ? 'queued' : status;
}

/** What the gateway stored about the input. `key` is relative to the storage root, never a client-chosen name. */
export interface StoredInput {
  key: string;
  /** The client's file name, for the download name only; never used as a path. */
  name: string;
  width: number;
  height: number;
  format: InputFormat;
  bytes: number;
}

/** The BullMQ job payload. Paths are storage keys so hosts can mount shared storage at different places. */
export interface JobData {
  id: string;
  engine: string;
  options: JobOptions;
  input: StoredInput;
  /** Storage key the engine must write the result to (extension matches options.format). */
  outputKey: string;
  createdAt: number;
  /** Attempts that ended with ENGINE_MEMORY_LIMIT; counted apart from other retries. */
  memoryLimitFailures?: number;
}

/** What a worker records on a completed job (BullMQ return value). */
export interface JobResult {
  width: number;
  height: number;
  format: OutputFormat;
  bytes: number;
  key: string;
  /** Options the engine actually applied (others were ignored as unsupported). */
  applied: Record<string, unknown>;
  engine: { name: string; version: string; host: string; pid?: number };
  timings: { runMs: number; [phase: string]: number };
  meta?: Record<string, unknown>;
}

/** Job ids: URL-safe, unguessable, fixed shape so a path segment can be checked before any lookup. */
export const JOB_ID_PATTERN = /^j_[0-9a-z]{20}$/;

const literals = <const V extends readonly string[]>(values: V) => Type.Union(values.map((v: V[number]) => Type.Literal(v)));
const DateTime = Type.String({ format: 'date-time' });

export const JobLinksSchema = Type.Object({ self: Type.String(), result: Type.String(), events: Type.String() });
export type JobLinks = Static<typeof JobLinksSchema>;

/** GET /v1/jobs/:id (and DELETE, and each SSE `status` event): the one job view. */
export const JobViewSchema = Type.Object({
  id: Type.String({ pattern: JOB_ID_PATTERN.source }),
  status: literals(JOB_STATUSES),
  progress: Type.Number({ minimum: 0, maximum: 1 }),
  engine: Type.String(),
  options: JobOptionsSchema,
  input: Type.Object({
    width: Type.Integer(),
    height: Type.Integer(),
    format: literals(INPUT_FORMATS),
    bytes: Type.Integer(),
    name: Type.String(),
  }),
  result: Type.Optional(
    Type.Object({
      width: Type.Integer(),
      height: Type.Integer(),
      format: literals(OUTPUT_FORMATS),
      bytes: Type.Integer(),
      url: Type.String(),
      applied: Type.Record(Type.String(), Type.Unknown(), { description: 'Options the engine applied (bgTile: the tile it used).' }),
      meta: Type.Optional(
        Type.Record(Type.String(), Type.Unknown(), {
          description: 'Engine figures; bgTileChoice: how the worker sized a tile left unset.',
        }),
      ),
    }),
  ),
  error: Type.Optional(JobErrorSchema),
  /** While a job waits for another attempt: why the previous one failed. */
  lastError: Type.Optional(JobErrorSchema),
  attempts: Type.Integer(),
  createdAt: DateTime,
  startedAt: Type.Optional(DateTime),
  finishedAt: Type.Optional(DateTime),
  timings: Type.Optional(Type.Object({ queuedMs: Type.Number(), runMs: Type.Optional(Type.Number()) })),
  links: JobLinksSchema,
});
export type JobView = Static<typeof JobViewSchema>;

/** 202 answer of POST /v1/jobs */
export const JobAcceptedSchema = Type.Object({
  id: Type.String({ pattern: JOB_ID_PATTERN.source }),
  status: Type.Literal('queued'),
  createdAt: DateTime,
  links: JobLinksSchema,
  warning: Type.Optional(
    Type.String({ description: 'Accepted although no live worker offers the engine (ACCEPT_WITHOUT_WORKER=true): the job waits for one.' }),
  ),
});
export type JobAccepted = Static<typeof JobAcceptedSchema>;

export function jobLinks(id: string, base = ''): JobLinks {
  return { self: `${base}/v1/jobs/${id}`, result: `${base}/v1/jobs/${id}/result`, events: `${base}/v1/jobs/${id}/events` };
}
