import { descendantsOf, treeRss } from './process-tree.js';

export interface WatchdogOptions {
  pid: number;
  limitBytes: number;
  /** Pids of the process tree; default: a /proc scan for descendants, cached for treeRefreshMs. */
  pids?: () => number[];
  /** Growth rate the sampling interval is sized for. Default 2 GB/s (the fastest growth measured was 2.1 GB/s). */
  assumedGrowthBytesPerSec?: number;
  minIntervalMs?: number;
  maxIntervalMs?: number;
  treeRefreshMs?: number;
  onOver(rssBytes: number): void;
}

/**
 * Samples one engine's process-tree RSS, adaptively: the interval is the time the assumed growth rate needs to cover
 * the headroom left, clamped to [5 ms, 1 s]. Far from the limit it costs one /proc read a second; near it, every
 * 5 ms, so at 1.5 GB/s the overshoot stays near 1.5 GB/s x 5 ms (+ the kill latency) instead of a fixed poll's 0.5-2 GB.
 */
export class MemoryWatchdog {
  rssBytes = 0;
  peakBytes = 0;
  samples = 0;
  /** CPU time spent sampling, µs (user + system), for the overhead figures. */
  cpuMicros = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private fired = false;
  private tree: number[] = [];
  private treeAt = 0;
  private readonly o: Required<Omit<WatchdogOptions, 'pids'>> & Pick<WatchdogOptions, 'pids'>;

  constructor(opts: WatchdogOptions) {
    this.o = { assumedGrowthBytesPerSec: 2e9, minIntervalMs: 5, maxIntervalMs: 1_000, treeRefreshMs: 200, ...opts };
  }

  start(): void {
    this.sample();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }

  get limitBytes(): number {
    return this.o.limitBytes;
  }

  /**
   * Take one sample now (also used between jobs for the soft mark). `cachedTree`: reuse the descendants found by the
   * last scan instead of scanning /proc again — the between-jobs check is on every job's path, and the periodic
   * samples keep the tree fresh.
   */
  sampleNow(opts: { cachedTree?: boolean } = {}): number {
    const before = process.cpuUsage();
    const now = Date.now();
    let pids: number[];
    if (this.o.pids) pids = this.o.pids();
    else {
      const stale = now - this.treeAt >= this.o.treeRefreshMs && !opts.cachedTree;
      if (stale || this.tree.length === 0) {
        this.tree = descendantsOf(this.o.pid);
        this.treeAt = now;
      }
      pids = this.tree;
    }
    if (!pids.includes(this.o.pid)) pids = [this.o.pid, ...pids];
    const rss = treeRss(pids);
    const cpu = process.cpuUsage(before);
    this.cpuMicros += cpu.user + cpu.system;
    this.samples++;
    this.rssBytes = rss;
    if (rss > this.peakBytes) this.peakBytes = rss;
    return rss;
  }

  /** The next interval for a given RSS: headroom / growth rate, clamped. */
  intervalFor(rss: number): number {
    const headroom = Math.max(0, this.o.limitBytes - rss);
    const ms = (headroom / this.o.assumedGrowthBytesPerSec) * 1000;
    return Math.min(this.o.maxIntervalMs, Math.max(this.o.minIntervalMs, ms));
  }

  private sample(): void {
    if (this.stopped) return;
    const rss = this.sampleNow();
    if (rss > this.o.limitBytes && !this.fired) {
      this.fired = true;
      this.o.onOver(rss);
      // Keep sampling while the kill ladder runs: the peak keeps counting until the process is gone.
    }
    this.timer = setTimeout(() => this.sample(), this.intervalFor(rss));
  }
}
