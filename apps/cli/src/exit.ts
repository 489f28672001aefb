import { ERRORS, isErrorCode } from '@photoenhance/contracts';
import { ApiProblemError, GatewayUnreachableError } from '@photoenhance/client';

import { CliError, EXIT, UNREACHABLE_HINT } from './exit-codes.js';

export { CliError, EXIT, UNREACHABLE_HINT };

/** One place turns any error into the line(s) a user sees and the exit code. */
export function explain(err: unknown): { message: string; exitCode: number } {
  if (err instanceof CliError) return { message: err.message, exitCode: err.exitCode };
  if (err instanceof ApiProblemError) {
    const retry = err.retryAfterSeconds !== undefined ? ` (retry after ${err.retryAfterSeconds} s)` : '';
    // Codes whose fix is on the operator's side get the catalogue's words on what to do.
    const hint = err.code === 'NO_WORKER_FOR_ENGINE' ? `\nhint: ${ERRORS.NO_WORKER_FOR_ENGINE.hint}` : '';
    return { message: `error ${err.code}: ${err.detail}${retry}${hint}`, exitCode: EXIT.FAILED };
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
