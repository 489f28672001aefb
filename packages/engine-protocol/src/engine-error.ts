import { ERRORS, isErrorCode, type ErrorCode } from '@photoenhance/contracts';

/**
 * Throw this from an engine's handler to fail the job with a catalogue code, e.g.
 * `throw new EngineError('IMAGE_UNREADABLE', 'JPEG is truncated', false)`.
 * `retryable` defaults to the catalogue's value for the code (true for codes outside the catalogue).
 * Any other error thrown by a handler is reported as ENGINE_FAILED, retryable.
 */
export class EngineError extends Error {
  readonly code: ErrorCode | string;
  readonly retryable: boolean;

  constructor(code: ErrorCode | string, message: string, retryable?: boolean, opts: { cause?: unknown } = {}) {
    super(message, { cause: opts.cause });
    this.name = 'EngineError';
    this.code = code;
    this.retryable = retryable ?? (isErrorCode(code) ? ((ERRORS[code] as { retryable?: boolean }).retryable ?? true) : true);
  }
}

/** The error a handler should throw (or let escape) when its signal aborts. */
export function abortError(): Error {
  const err = new Error('The job was canceled');
  err.name = 'AbortError';
  return err;
}
