import { constants } from 'node:os';
import { isErrorCode, type ErrorCode } from '@photoenhance/contracts';
import { EngineJobError } from './types.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** Bytes for people: "256 MiB", "8 GiB", "1.5 GiB". */
export function formatBytes(bytes: number): string {
  if (bytes >= GiB) return `${+(bytes / GiB).toFixed(2)} GiB`;
  if (bytes >= MiB) return `${Math.round(bytes / MiB)} MiB`;
  if (bytes >= 1024) return `${Math.round(bytes / 1024)} KiB`;
  return `${bytes} B`;
}

/** How a process ended, in words: "killed by SIGKILL (signal 9)", "exited with code 3". */
export function describeExit(code: number | null | undefined, signal: string | null | undefined, spawnError?: string): string {
  if (spawnError) return `could not be started (${spawnError})`;
  if (signal) {
    const n = (constants.signals as Record<string, number>)[signal];
    return n === undefined ? `killed by ${signal}` : `killed by ${signal} (signal ${n})`;
  }
  if (code === null || code === undefined) return 'exited (no exit status)';
  return `exited with code ${code}`;
}

export interface FailureContext {
  profile: string;
  pid: number | undefined;
  /** What happened, in words, without the engine prefix: "exited with code 3 mid-job". */
  what: string;
  stderrTail?: string;
  retryable?: boolean;
  details?: Record<string, unknown>;
  cause?: unknown;
}

/**
 * The one place every child-failure message is built, so they all read alike:
 * `engine <profile> (pid <pid>) <what>; stderr: <tail>`.
 */
export function engineFailure(code: ErrorCode, ctx: FailureContext): EngineJobError {
  const who = `engine ${ctx.profile}${ctx.pid === undefined ? '' : ` (pid ${ctx.pid})`}`;
  const tail = ctx.stderrTail?.trim();
  const message = `${who} ${ctx.what}${tail ? `; stderr: ${tail}` : ''}`;
  return new EngineJobError(code, message, {
    retryable: ctx.retryable,
    details: { profile: ctx.profile, pid: ctx.pid, ...(tail ? { stderrTail: tail } : {}), ...ctx.details },
    cause: ctx.cause,
  });
}

/** An engine-reported error code, kept when it is in the catalogue; anything else becomes ENGINE_FAILED. */
export function catalogueCode(code: string): ErrorCode {
  return isErrorCode(code) ? code : 'ENGINE_FAILED';
}

export const BYTES = { MiB, GiB } as const;
