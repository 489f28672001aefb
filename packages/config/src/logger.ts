import { pino, type Logger, type LoggerOptions } from 'pino';
import pretty from 'pino-pretty';
import { Type } from '@sinclair/typebox';

/** LOG_FORMAT: `auto` (pretty on a terminal, JSON otherwise), `json` or `pretty`. */
export const LogFormatSchema = Type.Union([Type.Literal('auto'), Type.Literal('json'), Type.Literal('pretty')], { default: 'auto' });
export type LogFormat = 'auto' | 'json' | 'pretty';

/**
 * One logger per app: JSON lines for machines (pipes, files, journald), one coloured line per event for a person at a
 * terminal (pino-pretty, synchronous: no worker thread, nothing lost at exit). Errors go through pino's `err`
 * serializer, so `{ err }` logs the stack.
 */
export function createLogger(o: {
  name: string;
  level: string;
  format?: LogFormat;
  stream?: NodeJS.WritableStream & { isTTY?: boolean };
}): Logger {
  const stream = o.stream ?? process.stdout;
  const format = o.format ?? 'auto';
  const usePretty = format === 'pretty' || (format === 'auto' && stream.isTTY === true);
  const options: LoggerOptions = { name: o.name, level: o.level };
  if (!usePretty) return pino(options, stream);
  // Colour on a terminal, or when a parent that owns one asks (the launcher pipes our output to its terminal).
  const forced = !!process.env.FORCE_COLOR && process.env.FORCE_COLOR !== '0';
  const colorize = (stream.isTTY === true || forced) && !process.env.NO_COLOR;
  return pino(
    options,
    pretty({ destination: stream, sync: true, colorize, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname', singleLine: true }),
  );
}
