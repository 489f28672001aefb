/**
 * Prefetch (docs/engine-protocol.md, "Prefetch"): the queue worker fetches up to poolSize × (1 + PREFETCH) jobs of an
 * engine, and this gate lets only poolSize of them at the engine at once. The others wait here staged, and get the
 * engine the moment a job leaves it (handed over in order, no fetch in between). A host fetches beyond poolSize only
 * while all its engines are busy, so a prefetching host never takes work another host's idle engine could start.
 */
export type GateEntry = 'run' | 'hold' | 'canceled';

interface Waiter {
  ticket: number;
  resolve: (e: GateEntry) => void;
  signal: AbortSignal;
  onAbort: () => void;
}

export class EngineGate {
  private running = 0;
  private readonly waiting: Waiter[] = [];
  /**
   * Tickets (fetch order) of jobs still staging. Jobs reach the engine in the order they were fetched, which is the
   * queue's (priority) order: a job staged faster does not overtake one fetched before it.
   */
  private nextTicket = 0;
  private readonly staging = new Set<number>();

  constructor(
    /** Jobs at the engine at once: poolSize, × maxBatch when the engine takes batches (read on every entry). */
    private readonly size: () => number,
    /** True while the host should not start jobs (admission holding, shutting down): waiting jobs go back. */
    private readonly holding: () => boolean,
  ) {}

  /** Jobs held ready for this engine (fetched and staged, waiting for it). */
  get waitingCount(): number {
    return this.waiting.length;
  }

  /**
   * 'run': the job may go to the engine now (call release() when the engine answers); 'hold': it waited and the host
   * started holding meanwhile, it goes back to the queue; 'canceled': canceled while waiting.
   */
  /** Call when the job is fetched (before staging); every ticket ends in enter() or drop(). */
  reserve(): number {
    const t = this.nextTicket++;
    this.staging.add(t);
    return t;
  }

  /** The job left before entering (staging failed, canceled): later jobs need not wait for it. No-op after enter(). */
  drop(ticket: number): void {
    if (this.staging.delete(ticket)) this.admit();
  }

  private earlierStaging(ticket: number): boolean {
    for (const t of this.staging) if (t < ticket) return true;
    return false;
  }

  enter(ticket: number, signal: AbortSignal): Promise<GateEntry> {
    this.staging.delete(ticket);
    if (signal.aborted) {
      this.admit();
      return Promise.resolve('canceled');
    }
    if (this.running < this.size() && this.waiting.length === 0 && !this.earlierStaging(ticket)) {
      this.running++;
      return Promise.resolve('run');
    }
    return new Promise<GateEntry>((resolve) => {
      const w: Waiter = {
        ticket,
        signal,
        onAbort: () => {
          const i = this.waiting.indexOf(w);
          if (i >= 0) this.waiting.splice(i, 1);
          resolve('canceled');
        },
        resolve: (e) => {
          signal.removeEventListener('abort', w.onAbort);
          resolve(e);
        },
      };
      signal.addEventListener('abort', w.onAbort, { once: true });
      // In ticket order (a job that staged slowly still goes before later ones).
      const at = this.waiting.findIndex((x) => x.ticket > ticket);
      if (at < 0) this.waiting.push(w);
      else this.waiting.splice(at, 0, w);
      this.admit();
    });
  }

  /** The job left the engine: hand the slot to the next waiting job, or free it. */
  release(): void {
    this.running = Math.max(0, this.running - 1);
    this.admit();
  }

  /** Let waiting jobs in while there is room (the size grows when an engine declares batches). */
  admit(): void {
    while (this.waiting.length && this.running < this.size() && !this.earlierStaging(this.waiting[0]!.ticket)) {
      const w = this.waiting.shift()!;
      if (this.holding()) {
        w.resolve('hold');
        continue;
      }
      this.running++;
      w.resolve('run');
    }
  }

  /** The host started holding (or stops): every waiting job goes back to the queue now. */
  releaseWaiting(): void {
    if (!this.holding()) return;
    for (const w of this.waiting.splice(0)) w.resolve('hold');
  }
}
