import { Type } from '@photoenhance/config';
import { JobOptionsInputSchema } from '@photoenhance/contracts';

/**
 * Schemas for the OpenAPI document only, where no contract states the shape: the multipart submission (built from the
 * options schema) and the host state. The job view, the 202 answer, the options and problems are the contracts' own
 * schemas (packages/contracts), used as they are.
 */

const lit = <T extends string>(values: readonly T[]) => Type.Union(values.map((v) => Type.Literal(v)));

/** POST /v1/jobs body: the image plus the options' fields (sent as multipart text fields, each optional). */
export const JobSubmissionSchema = Type.Object(
  {
    image: Type.String({ format: 'binary', description: 'The photo (JPEG, PNG, WebP, BMP or TIFF; the type is read from its bytes).' }),
    engine: Type.Optional(Type.String({ description: 'Engine name (GET /v1/engines); the default engine when left out.' })),
    ...Object.fromEntries(Object.entries(JobOptionsInputSchema.properties).map(([k, v]) => [k, Type.Optional(v)])),
  },
  { required: ['image'] },
);

export const HostStateSchema = Type.Object(
  {
    hostId: Type.String(),
    hostname: Type.String(),
    admission: Type.Object(
      {
        state: lit(['admitting', 'holding'] as const),
        reason: Type.String(),
        since: Type.Number(),
        thresholds: Type.Object({ minAvailableBytes: Type.Integer(), maxUsedRatio: Type.Number(), maxPressureSome10: Type.Number() }),
      },
      { additionalProperties: true },
    ),
    memory: Type.Object({
      totalBytes: Type.Integer(),
      availableBytes: Type.Integer(),
      usedRatio: Type.Number(),
      pressureSome10: Type.Optional(Type.Number()),
    }),
    enforcement: Type.Object({ mode: lit(['cgroup-v2', 'cgroup-v1', 'watchdog'] as const), reason: Type.String() }),
    processes: Type.Array(
      Type.Object(
        {
          profile: Type.String(),
          pid: Type.Optional(Type.Integer()),
          state: Type.String(),
          rssBytes: Type.Integer(),
          limitBytes: Type.Integer(),
          jobsDone: Type.Integer(),
          uptimeMs: Type.Integer(),
        },
        { additionalProperties: true },
      ),
    ),
    recycles: Type.Record(Type.String(), Type.Integer()),
  },
  { additionalProperties: true },
);
