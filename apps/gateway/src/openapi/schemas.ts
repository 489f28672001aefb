import { Type } from '@photoenhance/config';
import { ERRORS, JOB_STATUSES, JobOptionsSchema, OUTPUT_FORMATS, INPUT_FORMATS } from '@photoenhance/contracts';

/**
 * Schemas used only to document routes whose bodies are parsed by hand (multipart) or whose answers are not
 * serialized through a response schema (so adding one to the route would change what it sends). Everything a route
 * validates itself (querystrings, JSON bodies) reaches the document straight from the route's own schema.
 */

const lit = <T extends string>(values: readonly T[]) => Type.Union(values.map((v) => Type.Literal(v)));

export const ProblemSchema = Type.Object({
  type: Type.String({ format: 'uri' }),
  title: Type.String(),
  status: Type.Integer(),
  code: lit(Object.keys(ERRORS)),
  detail: Type.String({ description: 'What happened, then what to do about it.' }),
  instance: Type.Optional(Type.String()),
}, { additionalProperties: true, description: 'RFC 9457 problem details; `code` is from the error catalogue (docs/errors.md).' });

const JobLinksSchema = Type.Object({ self: Type.String(), result: Type.String(), events: Type.String() });
const JobErrorSchema = Type.Object({ code: lit(Object.keys(ERRORS)), message: Type.String() });

export const JobAcceptedSchema = Type.Object({
  id: Type.String({ pattern: '^j_[0-9a-z]{20}$' }),
  status: Type.Literal('queued'),
  createdAt: Type.String({ format: 'date-time' }),
  links: JobLinksSchema,
  warning: Type.Optional(Type.String({ description: 'Accepted although no live worker offers the engine (ACCEPT_WITHOUT_WORKER=true): the job waits for one.' })),
});

export const JobViewSchema = Type.Object({
  id: Type.String(),
  status: lit(JOB_STATUSES),
  progress: Type.Number({ minimum: 0, maximum: 1 }),
  engine: Type.String(),
  options: Type.Object(JobOptionsSchema.properties, { description: 'Options with defaults applied; `format` resolved from the input.' }),
  input: Type.Object({ width: Type.Integer(), height: Type.Integer(), format: lit(INPUT_FORMATS), bytes: Type.Integer(), name: Type.String() }),
  result: Type.Optional(Type.Object({
    width: Type.Integer(), height: Type.Integer(), format: lit(OUTPUT_FORMATS), bytes: Type.Integer(), url: Type.String(),
    applied: Type.Record(Type.String(), Type.Unknown()), meta: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  })),
  error: Type.Optional(JobErrorSchema),
  lastError: Type.Optional(JobErrorSchema),
  attempts: Type.Integer(),
  createdAt: Type.String({ format: 'date-time' }),
  startedAt: Type.Optional(Type.String({ format: 'date-time' })),
  finishedAt: Type.Optional(Type.String({ format: 'date-time' })),
  timings: Type.Optional(Type.Object({ queuedMs: Type.Number(), runMs: Type.Optional(Type.Number()) })),
  links: JobLinksSchema,
});

/** POST /v1/jobs body: the image plus JobOptionsSchema's fields (sent as multipart text fields). */
export const JobSubmissionSchema = Type.Object({
  image: Type.String({ format: 'binary', description: 'The photo (JPEG, PNG, WebP, BMP or TIFF; the type is read from its bytes).' }),
  engine: Type.Optional(Type.String({ description: 'Engine name (GET /v1/engines); the default engine when left out.' })),
  ...Object.fromEntries(Object.entries(JobOptionsSchema.properties).map(([k, v]) => [k, Type.Optional(v)])),
}, { required: ['image'] });

export const HostStateSchema = Type.Object({
  hostId: Type.String(),
  hostname: Type.String(),
  admission: Type.Object({ state: lit(['admitting', 'holding'] as const), reason: Type.String(), since: Type.Number(), thresholds: Type.Object({ minAvailableBytes: Type.Integer(), maxUsedRatio: Type.Number(), maxPressureSome10: Type.Number() }) }, { additionalProperties: true }),
  memory: Type.Object({ totalBytes: Type.Integer(), availableBytes: Type.Integer(), usedRatio: Type.Number(), pressureSome10: Type.Optional(Type.Number()) }),
  enforcement: Type.Object({ mode: lit(['cgroup-v2', 'cgroup-v1', 'watchdog'] as const), reason: Type.String() }),
  processes: Type.Array(Type.Object({ profile: Type.String(), pid: Type.Optional(Type.Integer()), state: Type.String(), rssBytes: Type.Integer(), limitBytes: Type.Integer(), jobsDone: Type.Integer(), uptimeMs: Type.Integer() }, { additionalProperties: true })),
  recycles: Type.Record(Type.String(), Type.Integer()),
}, { additionalProperties: true });
