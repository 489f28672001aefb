import type { ErrorCode, Problem } from '@photoenhance/contracts';

/** An error answer of the API (RFC 9457 problem+json), or an error status whose body was not a problem. */
export class ApiProblemError extends Error {
  readonly status: number;
  /** The catalogue code; `HTTP_ERROR` when the answer was not problem+json (a proxy page, say). */
  readonly code: ErrorCode | 'HTTP_ERROR';
  readonly detail: string;
  /** Seconds from the Retry-After header (delta-seconds or HTTP-date); undefined when absent. */
  readonly retryAfterSeconds: number | undefined;
  /** The problem body as received; undefined when the body was not problem+json. */
  readonly problem: Problem | undefined;

  constructor(status: number, problem: Problem | undefined, opts: { retryAfterSeconds?: number; fallbackDetail?: string } = {}) {
    const code = problem?.code ?? 'HTTP_ERROR';
    const detail = problem?.detail ?? opts.fallbackDetail ?? `HTTP ${status}`;
    super(`${code}: ${detail}`);
    this.name = 'ApiProblemError';
    this.status = status;
    this.code = code;
    this.detail = detail;
    this.retryAfterSeconds = opts.retryAfterSeconds;
    this.problem = problem;
  }
}

/** The gateway could not be reached at all (connection refused, DNS failure, reset before an answer). */
export class GatewayUnreachableError extends Error {
  readonly url: string;
  /** The system error code when there is one (ECONNREFUSED, ENOTFOUND, …). */
  readonly errno: string | undefined;

  constructor(url: string, cause: unknown) {
    const errno = systemCode(cause);
    const why = errno ?? innermostMessage(cause);
    super(`cannot reach the gateway at ${url}${why ? ` (${why})` : ''}`, { cause });
    this.name = 'GatewayUnreachableError';
    this.url = url;
    this.errno = errno;
  }
}

function systemCode(err: unknown): string | undefined {
  // undici wraps the socket error: TypeError('fetch failed', { cause: { code: 'ECONNREFUSED' } }), sometimes nested.
  let e: unknown = err;
  for (let depth = 0; depth < 4 && e && typeof e === 'object'; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) return code;
    const nested = (e as { errors?: unknown[] }).errors;
    if (Array.isArray(nested) && nested.length) {
      const c = systemCode(nested[0]);
      if (c) return c;
    }
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

function innermostMessage(err: unknown): string | undefined {
  let e: unknown = err;
  while (e instanceof Error && e.cause instanceof Error) e = e.cause;
  const m = e instanceof Error ? e.message : undefined;
  return m && m !== 'fetch failed' ? m : undefined;
}

/** Retry-After is either delta-seconds or an HTTP-date (RFC 9110 10.2.3). */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (value === null) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v);
  const at = Date.parse(v);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, Math.ceil((at - now) / 1000));
}
