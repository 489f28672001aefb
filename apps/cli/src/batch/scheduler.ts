import { AdaptiveWindow } from './adaptive-window.js';
import type { Item } from './plan.js';

/**
 * What may go out to the gateway, and when: the adaptive window over outstanding jobs, the pause every request of
 * the batch keeps after a busy answer or while the gateway is unreachable, the photos waiting to be submitted, and
 * the wake-up of the run loop when something changes.
 */
export class Scheduler {
  readonly window: AdaptiveWindow;
  /** Photos not submitted yet, in source order. */
  readonly fresh: Item[] = [];
  /** Photos to submit again (busy answers, lost jobs, transient failures); a due one goes before the fresh ones. */
  readonly retry: Item[] = [];
  /** Submitting or queued on the gateway: what the window counts. */
  readonly outstanding = new Map<string, Item>();
  /** No request of this batch goes out before this time (epoch ms): Retry-After of polls and downloads, unreachable back-off. */
  blockedUntil = 0;
  /** Set by Ctrl-C or the end of the run: nothing new goes out. */
  stopping = false;
  /** Ends the run: the gateway said waiting will not help, or stayed unreachable too long. */
  fatal: Error | undefined;
  private unreachableSince: number | undefined;
  private backoffMs = 250;
  private wakeUp: (() => void) | undefined;
  private readonly stopListeners: Array<() => void> = [];

  constructor(
    concurrencyMax: number,
    private readonly unreachableGiveUpMs: number,
  ) {
    this.window = new AdaptiveWindow({ max: concurrencyMax });
  }

  get running(): boolean {
    return !this.stopping && !this.fatal;
  }

  /** Photos waiting to be submitted (fresh or again). */
  get pending(): number {
    return this.fresh.length + this.retry.length;
  }

  /** The back-off that a request failing as unreachable waits before it is tried again. */
  get unreachableBackoffMs(): number {
    return this.backoffMs;
  }

  /** The next photo to submit now, or none: paused (Retry-After is honoured exactly), window full, nothing due. */
  next(now: number): Item | undefined {
    if (this.stopping || now < this.window.pausedUntil || now < this.blockedUntil) return undefined;
    if (this.outstanding.size >= this.window.limit) return undefined;
    const i = this.retry.findIndex((it) => it.notBefore <= now);
    if (i >= 0) return this.retry.splice(i, 1)[0];
    return this.fresh.shift();
  }

  /** Every request of this batch waits until `until`. */
  block(until: number): void {
    this.blockedUntil = Math.max(this.blockedUntil, until);
  }

  /** Every request waits its Retry-After (1 s when none came). */
  blockFor(retryAfterSeconds: number | undefined): void {
    this.block(Date.now() + (retryAfterSeconds ?? 1) * 1000);
  }

  fail(err: Error): void {
    this.fatal ??= err;
    this.wake();
  }

  stop(): void {
    this.stopping = true;
    this.wake();
  }

  /** Called on stop (Ctrl-C or the end of the run), after the run loop is woken. */
  onStop(listener: () => void): void {
    this.stopListeners.push(listener);
  }

  reachable(): void {
    this.unreachableSince = undefined;
    this.backoffMs = 250;
  }

  /** Everything waits with a growing pause; past the give-up time the run ends (exit 3, manifest saved). */
  unreachable(err: Error): void {
    const now = Date.now();
    this.unreachableSince ??= now;
    if (now - this.unreachableSince > this.unreachableGiveUpMs) {
      this.fail(err);
      return;
    }
    this.backoffMs = Math.min(8000, this.backoffMs * 2);
    this.block(now + this.backoffMs);
  }

  /** When the loop must look again even if nothing reports: a pause ending, a retry coming due. */
  nextTimerMs(alsoDue: Item[]): number {
    const now = Date.now();
    let ms = 1000;
    const gate = Math.max(this.window.pausedUntil, this.blockedUntil);
    if (gate > now) ms = Math.min(ms, gate - now);
    for (const it of [...this.retry, ...alsoDue]) if (it.notBefore > now) ms = Math.min(ms, it.notBefore - now);
    return ms;
  }

  wake(): void {
    const w = this.wakeUp;
    this.wakeUp = undefined;
    w?.();
    if (this.stopping) for (const l of this.stopListeners) l();
  }

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, Math.max(1, ms));
      function done(): void {
        clearTimeout(t);
        resolve();
      }
      this.wakeUp = done;
    });
  }
}
