/**
 * Exit codes and the usage error, with no imports: the command declarations (specs/) load this for `--help`, which must
 * not pay for the contracts package (about a second of start-up). exit.ts re-exports these.
 */

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
