import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';

/**
 * Operator commands to worker hosts over Redis pub/sub. One schema, used by the gateway to validate
 * PUT /v1/system/hosts/:hostId/admission and by the worker to validate what arrives on the channel (anyone with Redis
 * access can publish there, so the worker does not trust the gateway to have checked).
 */
/** The admission thresholds' bounds, shared by this schema and the worker's start-up settings (ADMISSION_*). */
export const ADMISSION_BOUNDS = {
  minAvailableBytes: { minimum: 0 },
  maxUsedRatio: { exclusiveMinimum: 0, maximum: 1 },
  maxPressureSome10: { minimum: 0, maximum: 100 },
} as const;

export const AdmissionOverrideSchema = Type.Object(
  {
    minAvailableBytes: Type.Optional(
      Type.Integer({ ...ADMISSION_BOUNDS.minAvailableBytes, description: 'Hold while available memory is below this many bytes.' }),
    ),
    maxUsedRatio: Type.Optional(
      Type.Number({ ...ADMISSION_BOUNDS.maxUsedRatio, description: 'Hold while the used share of memory is above this.' }),
    ),
    maxPressureSome10: Type.Optional(
      Type.Number({ ...ADMISSION_BOUNDS.maxPressureSome10, description: 'Hold while PSI memory some avg10 is above this.' }),
    ),
  },
  { additionalProperties: false, minProperties: 1 },
);
/** Thresholds an operator may change at run time (PUT /v1/system/hosts/:hostId/admission). */
export type AdmissionOverride = Static<typeof AdmissionOverrideSchema>;

export const ControlMessageSchema = Type.Object(
  {
    type: Type.Literal('admission'),
    /** A host id, or '*' for every host. */
    hostId: Type.String({ minLength: 1 }),
    admission: AdmissionOverrideSchema,
  },
  { additionalProperties: false },
);
/** Operator commands to worker hosts, over Redis pub/sub. `hostId: '*'` addresses every host. */
export type ControlMessage = Static<typeof ControlMessageSchema>;

/** Parse and validate one message from the control channel; a bad one comes back as a reason to log, never a throw. */
export function parseControlMessage(raw: string): { ok: true; message: ControlMessage } | { ok: false; problem: string } {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch (err) {
    return { ok: false, problem: `not JSON: ${(err as Error).message}` };
  }
  if (Value.Check(ControlMessageSchema, value)) return { ok: true, message: value };
  const first = [...Value.Errors(ControlMessageSchema, value)][0];
  return { ok: false, problem: first ? `${first.path || '/'}: ${first.message}` : 'does not match the control message schema' };
}
