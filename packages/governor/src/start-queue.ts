import type { Logger } from 'pino';

/** Something that wants engine processes started: a resident pool or a one-shot runner. */
export interface SpawnClient {
  readonly name: string;
  readonly expectedMemoryBytes: number;
  /** When its oldest unmet demand arose (FIFO across profiles); undefined when it wants nothing started now. */
  demandSince(now: number): number | undefined;
  /** Start one process; settle once it is ready, or has failed and is gone (the start-up window is over). */
  startOne(): Promise<{ pid: number | undefined; ok: boolean }>;
}

export interface StartRecord {
  profile: string;
  pid: number | undefined;
  spawnAt: number;
  settledAt: number;
  outcome: 'ready' | 'failed';
}

const HISTORY = 200;

/**
 * Engine processes start strictly one at a time across the host, all profiles and replacements included: start-up is
 * when a model process peaks (four GFPGAN processes started at once peaked 1 GiB higher than one at a time).
 * Woken by pump(); never polls. When admission says no, it stops and waits for the next pump (the admission timer).
 */
export class StartQueue {
  readonly history: StartRecord[] = [];
  private running = false;
  private again = false;
  private closed = false;

  constructor(
    private readonly clients: () => Iterable<SpawnClient>,
    /** Fresh admission check for this client: host admitting and able to afford its expected footprint. */
    private readonly canStart: (c: SpawnClient) => Promise<boolean>,
    private readonly logger: Logger,
  ) {}

  pump(): void {
    if (this.closed) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    void this.loop().finally(() => {
      this.running = false;
    });
  }

  close(): void {
    this.closed = true;
  }

  private async loop(): Promise<void> {
    for (;;) {
      this.again = false;
      if (this.closed) return;
      const now = Date.now();
      const wanting = [...this.clients()]
        .map((c) => ({ c, since: c.demandSince(now) }))
        .filter((x): x is { c: SpawnClient; since: number } => x.since !== undefined)
        .sort((a, b) => a.since - b.since);
      let chosen: SpawnClient | undefined;
      for (const { c } of wanting) {
        if (await this.canStart(c)) {
          chosen = c;
          break;
        }
      }
      if (!chosen || this.closed) {
        if (this.again) continue;
        return;
      }
      const spawnAt = Date.now();
      let out: { pid: number | undefined; ok: boolean } = { pid: undefined, ok: false };
      try {
        out = await chosen.startOne();
      } catch (e) {
        this.logger.error({ err: e, profile: chosen.name }, 'engine start threw');
      }
      this.history.push({ profile: chosen.name, pid: out.pid, spawnAt, settledAt: Date.now(), outcome: out.ok ? 'ready' : 'failed' });
      if (this.history.length > HISTORY) this.history.shift();
    }
  }
}
