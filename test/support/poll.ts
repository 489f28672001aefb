/**
 * The one polling helper for tests (the cross-app suites here and the packages' own suites): call `fn` until it returns
 * a truthy value, or fail naming `what` once the deadline passes. Bounded, never a fixed sleep "long enough"; where an
 * event exists, await the event instead.
 */
export interface PollOptions {
  /** Give up after this long (default 30 s: the machine may be loaded). */
  timeoutMs?: number;
  /** Pause between calls (default 50 ms). */
  everyMs?: number;
  /** Keep polling when `fn` throws, reporting the last error at the deadline (default true); false: rethrow at once. */
  retryErrors?: boolean;
}

export async function poll<T>(
  what: string,
  fn: () => Promise<T | undefined | false | null> | T | undefined | false | null,
  opts: PollOptions = {},
): Promise<T> {
  const { timeoutMs = 30_000, everyMs = 50, retryErrors = true } = opts;
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      if (!retryErrors) throw err;
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** poll() with positional arguments, as the suites in test/ call it. */
export function until<T>(
  what: string,
  fn: () => Promise<T | undefined | false | null> | T | undefined | false | null,
  timeoutMs = 30_000,
  everyMs = 50,
): Promise<T> {
  return poll(what, fn, { timeoutMs, everyMs });
}
