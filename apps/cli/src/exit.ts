import { ERRORS, isErrorCode } from '@photoenhance/contracts';
import { ApiProblemError, GatewayUnreachableError } from '@photoenhance/client';

/** Exit codes of every command: documented in apps/cli/README.md. */
export const EXIT = {
  OK: 0,
  /** The job failed, or the API answered with an error. */
  FAILED: 1,
  /** Bad usage or input (unknown option, bad value, unreadable file). */
  USAGE: 2,
  /** The gateway (or Redis, for `start`) cannot be reached or started. */
  UNREACHABLE: 3,
  /** Interrupted by Ctrl-C. */
  INTERRUPTED: 130,
} as const;

/** An error that ends a command with a message and an exit code; main() prints it. */
export class CliError extends Error {
  readonly exitCode: number;
  constructor(exitCode: number, message: string) {
    super(message);
    this.name = 'CliError';
    this.exitCode = exitCode;
  }
}

export const UNREACHABLE_HINT = 'is the gateway running? start it with npm start or set PHOTOENHANCE_URL';

/** One place turns any error into the line(s) a user sees and the exit code. */
export function explain(err: unknown): { message: string; exitCode: number } {
  if (err instanceof CliError) return { message: err.message, exitCode: err.exitCode };
  if (err instanceof ApiProblemError) {
    const retry = err.retryAfterSeconds !== undefined ? ` (retry after ${err.retryAfterSeconds} s)` : '';
    return { message: `error ${err.code}: ${err.detail}${retry}`, exitCode: EXIT.FAILED };
  }
  if (err instanceof GatewayUnreachableError) {
    return { message: `error: ${err.message}\nhint: ${UNREACHABLE_HINT}`, exitCode: EXIT.UNREACHABLE };
  }
  return { message: `error: ${err instanceof Error ? err.message : String(err)}`, exitCode: EXIT.FAILED };
}

/** A failed job's error line, with the catalogue's hint when the message does not carry it already. */
export function jobErrorLine(code: string, message: string): string {
  const hint = isErrorCode(code) ? ERRORS[code].hint : undefined;
  return `error ${code}: ${message}${hint && !message.includes(hint) ? `\nhint: ${hint}` : ''}`;
}
