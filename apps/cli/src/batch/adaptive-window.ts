/**
 * How many of this batch's jobs may be outstanding (submitted and not yet finished) at once: additive increase,
 * multiplicative decrease, like TCP's congestion window. A busy answer (503/429) is the congestion signal.
 *
 * - Slow start: +1 per accepted submission until the first busy answer, so an idle gateway fills quickly.
 * - Busy: the window shrinks to 0.7 of itself (never below 1; CUBIC's factor: a halved window lets the queue run dry
 *   behind a low queue limit), at most once per round: answers to submissions sent before the last decrease do not
 *   decrease again. Submissions then pause until Retry-After has passed, to the millisecond.
 * - Then additive increase: +1/size per accepted submission (about +1 per window's worth) back up to just below the
 *   window that met the last busy answer, and a quarter of that beyond it (probing slowly for room that appeared).
 */
/** Multiplicative decrease factor. */
const DECREASE = 0.7;

export class AdaptiveWindow {
  /** Current window (fractional; `limit` is what is used). */
  size: number;
  readonly max: number;
  /** Slow start until the first busy answer. */
  private slowStart = true;
  /** The window when the last busy answer came. */
  private ceiling = Infinity;
  private lastDecreaseAt = -Infinity;
  /** No submission may start before this time (epoch ms). */
  pausedUntil = 0;
  decreases = 0;
  /** Wall time submissions were paused by Retry-After, in total. */
  pausedMs = 0;
  minSeen: number;
  maxSeen: number;
  /** The window after each change, for `--json` and the bench (bounded). */
  readonly trace: Array<{ t: number; size: number; event: 'increase' | 'decrease' }> = [];
  private readonly t0 = Date.now();

  constructor(opts: { max: number; initial?: number }) {
    if (!Number.isInteger(opts.max) || opts.max < 1) throw new RangeError(`max must be a whole number >= 1; received ${opts.max}`);
    this.max = opts.max;
    this.size = Math.min(opts.max, Math.max(1, opts.initial ?? 4));
    this.minSeen = this.size;
    this.maxSeen = this.size;
  }

  get limit(): number {
    return Math.max(1, Math.floor(this.size));
  }

  onAccepted(): void {
    const before = this.limit;
    const step = this.slowStart ? 1 : this.size < this.ceiling - 1 ? 1 / this.size : 1 / (4 * this.size);
    this.size = Math.min(this.max, this.size + step);
    if (this.limit !== before) this.note('increase');
  }

  /**
   * A busy answer to a submission sent at `sentAt`, received at `receivedAt`, with Retry-After `retryAfterSeconds`
   * (1 s when the gateway sent none).
   */
  onBusy(sentAt: number, receivedAt: number, retryAfterSeconds: number | undefined): void {
    const until = receivedAt + (retryAfterSeconds ?? 1) * 1000;
    const from = Math.max(this.pausedUntil, receivedAt);
    if (until > from) this.pausedMs += until - from;
    this.pausedUntil = Math.max(this.pausedUntil, until);
    if (sentAt <= this.lastDecreaseAt) return;
    this.slowStart = false;
    this.ceiling = this.size;
    this.size = Math.max(1, this.size * DECREASE);
    this.lastDecreaseAt = receivedAt;
    this.decreases++;
    this.note('decrease');
  }

  /** Milliseconds until submissions may start again (0 when they may now). */
  waitMs(now = Date.now()): number {
    return Math.max(0, this.pausedUntil - now);
  }

  private note(event: 'increase' | 'decrease'): void {
    this.minSeen = Math.min(this.minSeen, this.limit);
    this.maxSeen = Math.max(this.maxSeen, this.limit);
    if (this.trace.length < 2000) this.trace.push({ t: Date.now() - this.t0, size: this.limit, event });
  }
}
