import type { AdaptiveWindow } from './adaptive-window.js';

export interface FailedPhoto {
  rel: string;
  code: string;
  message: string;
  jobId?: string;
}

export interface BatchReport {
  source: string;
  out: string;
  manifest: string;
  photos: number;
  /** Every photo whose result is in the output folder (this run or an earlier one). */
  done: number;
  doneThisRun: number;
  /** Done by an earlier run and left alone. */
  alreadyDone: number;
  /** Jobs submitted by an earlier run that this run waited for instead of submitting again. */
  reattached: number;
  /** Accepted submissions (202) in this run. */
  submitted: number;
  /** Photos submitted afresh because the gateway no longer knew their job (expired or unknown id). */
  resubmitted: number;
  failed: FailedPhoto[];
  failedByCode: Record<string, number>;
  skipped: Array<{ rel: string; reason: string }>;
  /** Photos neither done nor failed (only when interrupted). */
  unfinished: number;
  /** 503/429 answers, by code. */
  busy: { total: number; byCode: Record<string, number> };
  window: {
    max: number;
    final: number;
    min: number;
    maxSeen: number;
    decreases: number;
    pausedMs: number;
    trace: AdaptiveWindow['trace'];
  };
  interrupted: boolean;
  elapsedMs: number;
  /** Photos done in this run per second of this run. */
  photosPerSecond: number;
}

export interface BatchSnapshot {
  total: number;
  done: number;
  failed: number;
  outstanding: number;
  pending: number;
  window: number;
  busy: number;
  pausedMs: number;
  /** Photos per second over the last 20 s (this run). */
  rate: number;
  doneThisRun: number;
}

/** The run's counters: what the progress line and the final report are made of. */
export class Tally {
  readonly failed: FailedPhoto[] = [];
  readonly busyByCode: Record<string, number> = {};
  busyTotal = 0;
  alreadyDone = 0;
  doneThisRun = 0;
  reattached = 0;
  submitted = 0;
  resubmitted = 0;
  readonly startedAt = Date.now();
  /** When each photo of this run was done, for the rate over the last 20 s. */
  private readonly completions: number[] = [];

  busy(code: string): void {
    this.busyTotal++;
    this.busyByCode[code] = (this.busyByCode[code] ?? 0) + 1;
  }

  done(): void {
    this.doneThisRun++;
    this.completions.push(Date.now());
  }

  get doneTotal(): number {
    return this.alreadyDone + this.doneThisRun;
  }

  /** Photos per second over the last 20 s. */
  rate(now: number): number {
    while (this.completions.length && this.completions[0]! < now - 20_000) this.completions.shift();
    const span = Math.min(20_000, now - this.startedAt) / 1000;
    return span > 0.5 ? this.completions.length / span : 0;
  }

  failedByCode(): Record<string, number> {
    const byCode: Record<string, number> = {};
    for (const f of this.failed) byCode[f.code] = (byCode[f.code] ?? 0) + 1;
    return byCode;
  }
}
