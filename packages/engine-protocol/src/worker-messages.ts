import { isAbsolute } from 'node:path';
import {
  DEFAULT_OPTIONS,
  OUTPUT_FORMATS,
  ProtocolError,
  readProtocolLine,
  SCALES,
  type CancelRequest,
  type JobOptions,
  type JobRequest,
  type ShutdownRequest,
  type WorkerToEngine,
} from '@photoenhance/contracts';

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const nonEmpty = (v: unknown): v is string => typeof v === 'string' && v.length > 0;

/**
 * Parse and check one line the worker wrote to an engine's stdin (the counterpart of contracts' parseEngineMessage).
 * A job's options come back complete: missing ones take the defaults, but `format` must be given and resolved
 * (png, jpeg or webp — never auto), because the output path's extension was chosen from it.
 * Throws ProtocolError saying what is wrong; `.id` carries the job id when the line had one, so the reply can name it.
 */
export function parseWorkerMessage(line: string): WorkerToEngine {
  const v = readProtocolLine(line);
  const id = nonEmpty(v.id) ? v.id : undefined;
  const fail = (message: string): never => {
    throw Object.assign(new ProtocolError(message), { id });
  };
  switch (v.type) {
    case 'job': {
      if (!id) fail('job needs id (a non-empty string)');
      if (!nonEmpty(v.input) || !isAbsolute(v.input)) fail('job needs input (an absolute path)');
      if (!nonEmpty(v.output) || !isAbsolute(v.output)) fail('job needs output (an absolute path)');
      if (!isObj(v.options)) fail('job needs options (an object)');
      const options = checkOptions(v.options as Record<string, unknown>, fail);
      return { type: 'job', id: id!, input: v.input as string, output: v.output as string, options } satisfies JobRequest;
    }
    case 'cancel':
      if (!id) fail('cancel needs id (a non-empty string)');
      return { type: 'cancel', id: id! } satisfies CancelRequest;
    case 'shutdown':
      return { type: 'shutdown' } satisfies ShutdownRequest;
    default:
      return fail(`unknown message type ${JSON.stringify(v.type)}; expected job, cancel or shutdown`);
  }
}

function checkOptions(o: Record<string, unknown>, fail: (m: string) => never): JobOptions {
  if (!(OUTPUT_FORMATS as readonly unknown[]).includes(o.format)) {
    fail(`options.format must be one of ${OUTPUT_FORMATS.join(', ')} (resolved by the worker); received ${JSON.stringify(o.format)}`);
  }
  if (o.scale !== undefined && !(SCALES as readonly unknown[]).includes(o.scale)) {
    fail(`options.scale must be one of ${SCALES.join(', ')}; received ${JSON.stringify(o.scale)}`);
  }
  if (o.quality !== undefined && !(Number.isInteger(o.quality) && (o.quality as number) >= 1 && (o.quality as number) <= 100)) {
    fail(`options.quality must be an integer from 1 to 100; received ${JSON.stringify(o.quality)}`);
  }
  return { ...DEFAULT_OPTIONS, ...o } as JobOptions;
}

/** The job id a rejected line carried, if any (set by parseWorkerMessage on its ProtocolError). */
export function protocolErrorId(err: unknown): string | undefined {
  const id = isObj(err) ? err.id : undefined;
  return typeof id === 'string' ? id : undefined;
}
