import type { PhotoEnhanceClient, SubmitOptions } from '@photoenhance/client';
import type { Source } from './inputs.js';
import type { Manifest } from './manifest.js';
import { type Item, newEntry, planRun } from './plan.js';
import { Scheduler } from './scheduler.js';
import { backOff, Downloader, type Outcomes, Poller, type StepContext, Submitter } from './steps.js';
import { type BatchReport, type BatchSnapshot, Tally } from './tally.js';

export type { BatchReport, BatchSnapshot } from './tally.js';

export interface BatchRunOptions {
  client: PhotoEnhanceClient;
  source: Source;
  outDir: string;
  manifest: Manifest;
  /** Validated options, sent with every photo. */
  options: SubmitOptions;
  /** Upper bound of the adaptive window (jobs of this batch outstanding at once). */
  concurrencyMax: number;
  /** Aborted on Ctrl-C: stop submitting, keep what was submitted running, save the manifest. */
  stop: AbortSignal;
  /** Pause between status sweeps of outstanding jobs. Default 250 ms. */
  pollMs?: number;
  /** Results downloaded at once. Default 4. */
  downloadConcurrency?: number;
  /** Give up (exit 3) when the gateway stays unreachable this long. Default 60 s. */
  unreachableGiveUpMs?: number;
  /** How long in-flight uploads may take to be answered after Ctrl-C, so their job ids are recorded. Default 3 s. */
  stopGraceMs?: number;
  /** Occasional notes for stderr (re-attached jobs, expired jobs resubmitted). */
  note?: (line: string) => void;
}

const MAX_RESUBMITS = 3;

/**
 * One batch run: plan from the manifest (plan.ts), then the run loop: the scheduler (scheduler.ts: adaptive window,
 * pauses) lets submissions out, the steps (steps.ts) submit, poll and download, and every outcome is recorded in the
 * manifest (manifest.ts) and counted (tally.ts).
 */
export class BatchRunner implements Outcomes {
  private readonly o: Required<Omit<BatchRunOptions, 'note'>> & Pick<BatchRunOptions, 'note'>;
  private readonly scheduler: Scheduler;
  private readonly tally = new Tally();
  private readonly ctx: StepContext;
  private readonly submitter: Submitter;
  private readonly poller: Poller;
  private downloader: Downloader | undefined;

  constructor(opts: BatchRunOptions) {
    this.o = { pollMs: 250, downloadConcurrency: 4, unreachableGiveUpMs: 60_000, stopGraceMs: 3000, ...opts };
    this.scheduler = new Scheduler(opts.concurrencyMax, this.o.unreachableGiveUpMs);
    this.ctx = { client: opts.client, manifest: opts.manifest, scheduler: this.scheduler, tally: this.tally, outcomes: this };
    this.submitter = new Submitter(this.ctx, opts.options, (item) => this.poller.polling.set(item.photo.rel, item));
    this.poller = new Poller(this.ctx, this.o.pollMs, (item) => this.downloader?.queue.push(item));
  }

  snapshot(): BatchSnapshot {
    const now = Date.now();
    const { scheduler, tally } = this;
    return {
      total: this.o.source.photos.length,
      done: tally.doneTotal,
      failed: tally.failed.length,
      outstanding: scheduler.outstanding.size,
      pending: scheduler.pending,
      window: scheduler.window.limit,
      busy: tally.busyTotal,
      pausedMs: scheduler.window.waitMs(now),
      rate: tally.rate(now),
      doneThisRun: tally.doneThisRun,
    };
  }

  async run(): Promise<BatchReport> {
    const { scheduler } = this;
    const downloader = await this.plan();
    const onStop = (): void => {
      scheduler.stopping = true;
      downloader.stop('interrupted');
      scheduler.wake();
    };
    if (this.o.stop.aborted) onStop();
    else this.o.stop.addEventListener('abort', onStop, { once: true });
    const poller = this.poller.loop();
    try {
      while (scheduler.running) {
        this.submitter.launch();
        downloader.launch();
        if (this.finished(downloader)) break;
        await scheduler.sleep(scheduler.nextTimerMs(downloader.queue));
      }
    } finally {
      scheduler.stop();
      await this.submitter.settle(this.o.stopGraceMs);
      downloader.stop('stopped');
      await poller;
      while (downloader.downloading > 0) await scheduler.sleep(50);
      this.o.stop.removeEventListener('abort', onStop);
    }
    if (scheduler.fatal) throw scheduler.fatal;
    return this.report();
  }

  private async plan(): Promise<Downloader> {
    const { manifest, source, outDir } = this.o;
    const plan = await planRun(manifest, source.photos, outDir, this.o.options.format);
    const downloader = new Downloader(this.ctx, outDir, this.o.downloadConcurrency, plan.claims);
    this.downloader = downloader;
    this.tally.alreadyDone = plan.alreadyDone;
    this.scheduler.fresh.push(...plan.fresh);
    for (const it of plan.reattached) {
      // Submitted by an earlier run: wait for that job (or fetch its result again) rather than submit twice.
      this.scheduler.outstanding.set(it.photo.rel, it);
      this.poller.polling.set(it.photo.rel, it);
    }
    this.tally.reattached = plan.reattached.length;
    this.scheduler.retry.push(...plan.resend);
    const n = plan.reattached.length;
    if (n) this.o.note?.(`re-attaching to ${n} job${n > 1 ? 's' : ''} submitted by an earlier run`);
    return downloader;
  }

  private finished(downloader: Downloader): boolean {
    return this.scheduler.pending === 0 && this.scheduler.outstanding.size === 0 && !downloader.busy;
  }

  // ---- outcomes (Outcomes) ------------------------------------------------------------------------------------------

  /** The gateway no longer knows the job (expired, or its store was reset): submit the photo afresh, new key. */
  resubmit(item: Item, why: string): void {
    if (item.resubmits >= MAX_RESUBMITS) {
      this.fail(item, why, `job ${item.entry.jobId ?? '?'} was lost ${item.resubmits + 1} times`);
      return;
    }
    item.resubmits++;
    this.tally.resubmitted++;
    const lost = item.entry.jobId ? `job ${item.entry.jobId} is gone (${why})` : `${why} for too long`;
    this.o.note?.(`${item.photo.rel}: ${lost}; submitting it afresh`);
    item.entry = newEntry(this.o.manifest, item.photo, item.entry.attempt + 1);
    item.reattached = false;
    item.retries = 0;
    item.inFlightAnswers = 0;
    item.notBefore = 0;
    this.scheduler.retry.unshift(item);
  }

  transient(item: Item, code: string, message: string): void {
    if (backOff(item)) this.scheduler.retry.push(item);
    else this.fail(item, code, message);
  }

  fail(item: Item, code: string, message: string): void {
    this.scheduler.outstanding.delete(item.photo.rel);
    this.poller.forget(item.photo.rel);
    item.entry = this.o.manifest.record({ ...item.entry, state: 'failed', error: { code, message } });
    this.tally.failed.push({ rel: item.photo.rel, code, message, ...(item.entry.jobId ? { jobId: item.entry.jobId } : {}) });
  }

  private report(): BatchReport {
    const { tally, scheduler } = this;
    const { window } = scheduler;
    const elapsedMs = Date.now() - tally.startedAt;
    const photos = this.o.source.photos.length;
    return {
      source: this.o.source.base,
      out: this.o.outDir,
      manifest: this.o.manifest.path,
      photos,
      done: tally.doneTotal,
      doneThisRun: tally.doneThisRun,
      alreadyDone: tally.alreadyDone,
      reattached: tally.reattached,
      submitted: tally.submitted,
      resubmitted: tally.resubmitted,
      failed: tally.failed,
      failedByCode: tally.failedByCode(),
      skipped: this.o.source.skipped,
      unfinished: photos - tally.doneTotal - tally.failed.length,
      busy: { total: tally.busyTotal, byCode: tally.busyByCode },
      window: {
        max: window.max,
        final: window.limit,
        min: window.minSeen,
        maxSeen: window.maxSeen,
        decreases: window.decreases,
        pausedMs: window.pausedMs,
        trace: window.trace,
      },
      interrupted: this.o.stop.aborted,
      elapsedMs,
      photosPerSecond: elapsedMs > 0 ? (tally.doneThisRun / elapsedMs) * 1000 : 0,
    };
  }
}
