import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { FORMAT_EXTENSIONS, type JobView, type OutputFormat } from '@photoenhance/contracts';
import { ApiProblemError, GatewayUnreachableError, type PhotoEnhanceClient, type SubmitOptions } from '@photoenhance/client';
import { AdaptiveWindow } from './adaptive-window.js';
import { outputRel, planOutputs, type Photo, type Source } from './inputs.js';
import { Manifest, type ManifestEntry } from './manifest.js';

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
  window: { max: number; final: number; min: number; maxSeen: number; decreases: number; pausedMs: number; trace: AdaptiveWindow['trace'] };
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

interface Item {
  photo: Photo;
  entry: ManifestEntry;
  /** Planned output path (relative), from the expected format. */
  planned: string;
  notBefore: number;
  /** Transient failures (5xx, download errors) of the current attempt. */
  retries: number;
  /** Fresh submissions after the gateway lost the job. */
  resubmits: number;
  /** 409 answers (same key still being accepted) for the current key. */
  inFlightAnswers: number;
  reattached: boolean;
  view?: JobView;
}

const FINAL = new Set(['completed', 'failed', 'canceled']);
const MAX_TRANSIENT_RETRIES = 3;
const MAX_RESUBMITS = 3;
/** 409s (about one a second) before a key is given up for a fresh one. */
const MAX_IN_FLIGHT_ANSWERS = 30;

/** One batch run: plan from the manifest, submit with the adaptive window, poll, download, record. */
export class BatchRunner {
  private readonly o: Required<Omit<BatchRunOptions, 'note'>> & Pick<BatchRunOptions, 'note'>;
  private readonly window: AdaptiveWindow;
  private readonly fresh: Item[] = [];
  private readonly retry: Item[] = [];
  /** Submitting or queued on the gateway: what the window counts. */
  private readonly outstanding = new Map<string, Item>();
  /** Items with a job id whose status is polled, oldest first. */
  private readonly polling = new Map<string, Item>();
  private readonly downloadQueue: Item[] = [];
  private downloading = 0;
  private readonly claims = new Map<string, string>();
  private readonly failed: FailedPhoto[] = [];
  private readonly completions: number[] = [];
  private readonly busyByCode: Record<string, number> = {};
  private busyTotal = 0;
  private alreadyDone = 0;
  private doneThisRun = 0;
  private reattached = 0;
  private submitted = 0;
  private resubmitted = 0;
  private stopping = false;
  private fatal: Error | undefined;
  private unreachableSince: number | undefined;
  private unreachableBackoffMs = 250;
  private blockedUntil = 0;
  private wakeUp: (() => void) | undefined;
  private pollWakeUp: (() => void) | undefined;
  private readonly inflightSubmits = new Set<Promise<void>>();
  private readonly submitAbort = new AbortController();
  private readonly downloadAbort = new AbortController();
  private readonly startedAt = Date.now();

  constructor(opts: BatchRunOptions) {
    this.o = { pollMs: 250, downloadConcurrency: 4, unreachableGiveUpMs: 60_000, stopGraceMs: 3000, ...opts };
    this.window = new AdaptiveWindow({ max: opts.concurrencyMax });
  }

  snapshot(): BatchSnapshot {
    const now = Date.now();
    while (this.completions.length && this.completions[0]! < now - 20_000) this.completions.shift();
    const span = Math.min(20_000, now - this.startedAt) / 1000;
    return {
      total: this.o.source.photos.length,
      done: this.alreadyDone + this.doneThisRun,
      failed: this.failed.length,
      outstanding: this.outstanding.size,
      pending: this.fresh.length + this.retry.length,
      window: this.window.limit,
      busy: this.busyTotal,
      pausedMs: this.window.waitMs(now),
      rate: span > 0.5 ? this.completions.length / span : 0,
      doneThisRun: this.doneThisRun,
    };
  }

  async run(): Promise<BatchReport> {
    await this.plan();
    const onStop = (): void => {
      this.stopping = true;
      this.downloadAbort.abort(new Error('interrupted'));
      this.wake();
    };
    if (this.o.stop.aborted) onStop();
    else this.o.stop.addEventListener('abort', onStop, { once: true });
    const poller = this.pollLoop();
    try {
      while (!this.stopping && !this.fatal) {
        this.launchSubmissions();
        this.launchDownloads();
        if (this.finished()) break;
        await this.sleepUntilWoken(this.nextTimerMs());
      }
    } finally {
      this.stopping = true;
      this.wake();
      await this.settleSubmissions();
      this.downloadAbort.abort(new Error('stopped'));
      await poller;
      while (this.downloading > 0) await this.sleepUntilWoken(50);
      this.o.stop.removeEventListener('abort', onStop);
    }
    if (this.fatal) throw this.fatal;
    return this.report();
  }

  // ---- planning -------------------------------------------------------------------------------------------------

  private async plan(): Promise<void> {
    const { manifest, source, outDir } = this.o;
    const planned = planOutputs(source.photos, this.o.options.format);
    for (const [rel, out] of planned) this.claims.set(out.toLowerCase(), rel);
    const resend: Item[] = [];
    for (const photo of source.photos) {
      const prev = manifest.get(photo.rel);
      const sameVersion = prev !== undefined && prev.size === photo.size && prev.mtimeMs === photo.mtimeMs;
      const item = (entry: ManifestEntry): Item => ({ photo, entry, planned: planned.get(photo.rel)!, notBefore: 0, retries: 0, resubmits: 0, inFlightAnswers: 0, reattached: false });
      if (!prev || !sameVersion) {
        const attempt = prev ? prev.attempt + 1 : 0;
        this.fresh.push(item(this.newEntry(photo, attempt)));
        continue;
      }
      if (prev.state === 'done' && prev.output) {
        if (await stat(join(outDir, prev.output)).then((s) => s.isFile(), () => false)) {
          this.alreadyDone++;
          this.claims.set(prev.output.toLowerCase(), photo.rel);
          continue;
        }
      }
      if ((prev.state === 'queued' || prev.state === 'done') && prev.jobId) {
        // Submitted by an earlier run: wait for that job (or fetch its result again) rather than submit twice.
        const it = item(prev);
        it.reattached = true;
        this.outstanding.set(photo.rel, it);
        this.polling.set(photo.rel, it);
        this.reattached++;
      } else if (prev.state === 'submitting') {
        // The answer was lost: send again with the same key, so a gateway that saw it returns the same job.
        resend.push(item(prev));
      } else {
        this.fresh.push(item(this.newEntry(photo, prev.attempt + 1)));
      }
    }
    this.retry.push(...resend);
    if (this.reattached) this.o.note?.(`re-attaching to ${this.reattached} job${this.reattached > 1 ? 's' : ''} submitted by an earlier run`);
  }

  private newEntry(photo: Photo, attempt: number): ManifestEntry {
    return {
      rel: photo.rel,
      size: photo.size,
      mtimeMs: photo.mtimeMs,
      attempt,
      key: this.o.manifest.keyFor(photo.rel, photo.size, photo.mtimeMs, attempt),
      state: 'submitting',
      at: new Date().toISOString(),
    };
  }

  // ---- the loop ---------------------------------------------------------------------------------------------------

  private finished(): boolean {
    return this.fresh.length === 0 && this.retry.length === 0 && this.outstanding.size === 0 && this.downloading === 0 && this.downloadQueue.length === 0;
  }

  private wake(): void {
    const w = this.wakeUp;
    this.wakeUp = undefined;
    w?.();
    if (this.stopping) this.pollWakeUp?.();
  }

  private sleepUntilWoken(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, Math.max(1, ms));
      function done(): void {
        clearTimeout(t);
        resolve();
      }
      this.wakeUp = done;
    });
  }

  /** When the loop must look again even if nothing reports: a pause ending, a retry coming due. */
  private nextTimerMs(): number {
    const now = Date.now();
    let ms = 1000;
    const gate = Math.max(this.window.pausedUntil, this.blockedUntil);
    if (gate > now) ms = Math.min(ms, gate - now);
    for (const it of [...this.retry, ...this.downloadQueue]) if (it.notBefore > now) ms = Math.min(ms, it.notBefore - now);
    return ms;
  }

  private takeNext(now: number): Item | undefined {
    const i = this.retry.findIndex((it) => it.notBefore <= now);
    if (i >= 0) return this.retry.splice(i, 1)[0];
    return this.fresh.shift();
  }

  private launchSubmissions(): void {
    for (;;) {
      const now = Date.now();
      // Retry-After is honoured exactly: nothing is sent before the pause has passed.
      if (this.stopping || now < this.window.pausedUntil || now < this.blockedUntil) return;
      if (this.outstanding.size >= this.window.limit) return;
      const item = this.takeNext(now);
      if (!item) return;
      const p = this.submit(item).finally(() => {
        this.inflightSubmits.delete(p);
        this.wake();
      });
      this.inflightSubmits.add(p);
    }
  }

  private async submit(item: Item): Promise<void> {
    const rel = item.photo.rel;
    this.outstanding.set(rel, item);
    if (item.entry.state !== 'submitting' || item.entry.jobId) item.entry = { ...item.entry, state: 'submitting', jobId: undefined };
    // Recorded before sending: a crash from here on resends with this same key.
    item.entry = this.o.manifest.record(item.entry);
    const sentAt = Date.now();
    try {
      const accepted = await this.o.client.submit(item.photo.abs, this.o.options, { idempotencyKey: item.entry.key, signal: this.submitAbort.signal });
      this.reachable();
      item.entry = this.o.manifest.record({ ...item.entry, state: 'queued', jobId: accepted.id });
      this.submitted++;
      this.window.onAccepted();
      this.polling.set(rel, item);
    } catch (err) {
      this.outstanding.delete(rel);
      if (this.submitAbort.signal.aborted) return; // stopped mid-upload: the manifest says `submitting`, a rerun resends
      if (err instanceof ApiProblemError) {
        this.reachable();
        if (err.code === 'NO_WORKER_FOR_ENGINE') {
          // Waiting will not start a worker: end the run with the gateway's words (manifest saved; rerun once one runs).
          this.retry.unshift(item);
          this.fatal ??= err;
          this.wake();
        } else if (err.status === 503 || err.status === 429) {
          this.busyTotal++;
          this.busyByCode[err.code] = (this.busyByCode[err.code] ?? 0) + 1;
          this.window.onBusy(sentAt, Date.now(), err.retryAfterSeconds);
          this.retry.unshift(item);
        } else if (err.status === 409) {
          // The same key is still being accepted on the gateway (a first upload cut off by a crash may hold it for a
          // while): ask again later; after a while give up on that key and submit afresh.
          if (++item.inFlightAnswers > MAX_IN_FLIGHT_ANSWERS) return this.resubmit(item, err.code);
          item.notBefore = Date.now() + (err.retryAfterSeconds ?? 1) * 1000;
          this.retry.push(item);
        } else if (err.status >= 500) {
          this.transient(item, err.code, err.detail);
        } else {
          this.fail(item, err.code, err.detail);
        }
      } else if (err instanceof GatewayUnreachableError) {
        this.unreachable(err);
        this.retry.unshift(item);
      } else {
        const code = (err as NodeJS.ErrnoException).code;
        this.fail(item, code === 'ENOENT' || code === 'EACCES' || code === 'EISDIR' ? 'INPUT_UNREADABLE' : 'SUBMIT_FAILED', (err as Error).message);
      }
    }
  }

  /** After Ctrl-C: give in-flight uploads a moment to be answered (their job ids get recorded), then abort them. */
  private async settleSubmissions(): Promise<void> {
    if (this.inflightSubmits.size === 0) return;
    const grace = new Promise<void>((r) => setTimeout(r, this.o.stopGraceMs).unref());
    await Promise.race([Promise.allSettled([...this.inflightSubmits]), grace]);
    this.submitAbort.abort(new Error('interrupted'));
    await Promise.allSettled([...this.inflightSubmits]);
  }

  // ---- polling ----------------------------------------------------------------------------------------------------

  private async pollLoop(): Promise<void> {
    while (!this.stopping && !this.fatal) {
      if (this.polling.size > 0 && Date.now() >= this.blockedUntil) await this.sweep();
      if (this.stopping) return;
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, this.o.pollMs);
        function done(): void {
          clearTimeout(t);
          resolve();
        }
        this.pollWakeUp = done;
      });
      this.pollWakeUp = undefined;
    }
  }

  /**
   * One look at outstanding jobs, oldest first, eight at a time. Queues are first in, first out, so once a whole group
   * of eight is still waiting the younger ones are too: the sweep stops there.
   */
  private async sweep(): Promise<void> {
    const list = [...this.polling.values()];
    for (let i = 0; i < list.length && !this.stopping && Date.now() >= this.blockedUntil; i += 8) {
      const group = list.slice(i, i + 8);
      const results = await Promise.all(group.map((it) => this.o.client.get(it.entry.jobId!).then((v) => ({ it, v }), (e: unknown) => ({ it, e }))));
      let allWaiting = true;
      for (const r of results) {
        if ('v' in r) {
          this.reachable();
          if (r.v.status !== 'queued') allWaiting = false;
          this.onView(r.it, r.v);
        } else {
          allWaiting = false;
          this.onPollError(r.it, r.e);
        }
      }
      this.wake();
      if (allWaiting) return;
    }
  }

  private onView(item: Item, view: JobView): void {
    if (!this.polling.has(item.photo.rel)) return;
    item.view = view;
    if (!FINAL.has(view.status)) return;
    this.polling.delete(item.photo.rel);
    this.outstanding.delete(item.photo.rel);
    if (view.status === 'completed') {
      this.downloadQueue.push(item);
    } else if (view.status === 'canceled') {
      this.fail(item, 'JOB_CANCELED', `job ${view.id} was canceled`);
    } else {
      this.fail(item, view.error?.code ?? 'ENGINE_FAILED', view.error?.message ?? `job ${view.id} failed`);
    }
  }

  private onPollError(item: Item, err: unknown): void {
    if (err instanceof ApiProblemError) {
      this.reachable();
      if (err.status === 404 || err.status === 410) {
        this.polling.delete(item.photo.rel);
        this.outstanding.delete(item.photo.rel);
        this.resubmit(item, err.code);
      } else if (err.status === 503 || err.status === 429) {
        // Over a rate limit or overloaded: every request of this batch waits its Retry-After.
        this.blockedUntil = Math.max(this.blockedUntil, Date.now() + (err.retryAfterSeconds ?? 1) * 1000);
      }
      // Others: look again on the next sweep.
    } else if (err instanceof GatewayUnreachableError) {
      this.unreachable(err);
    }
  }

  /** The gateway no longer knows the job (expired, or its store was reset): submit the photo afresh, new key. */
  private resubmit(item: Item, why: string): void {
    if (item.resubmits >= MAX_RESUBMITS) {
      this.fail(item, why, `job ${item.entry.jobId ?? '?'} was lost ${item.resubmits + 1} times`);
      return;
    }
    item.resubmits++;
    this.resubmitted++;
    this.o.note?.(`${item.photo.rel}: ${item.entry.jobId ? `job ${item.entry.jobId} is gone (${why})` : `${why} for too long`}; submitting it afresh`);
    const fresh = this.newEntry(item.photo, item.entry.attempt + 1);
    item.entry = fresh;
    item.reattached = false;
    item.retries = 0;
    item.inFlightAnswers = 0;
    item.notBefore = 0;
    this.retry.unshift(item);
  }

  // ---- downloads --------------------------------------------------------------------------------------------------

  private launchDownloads(): void {
    while (!this.stopping && this.downloading < this.o.downloadConcurrency) {
      const now = Date.now();
      if (now < this.blockedUntil) return;
      const i = this.downloadQueue.findIndex((it) => it.notBefore <= now);
      if (i < 0) return;
      const item = this.downloadQueue.splice(i, 1)[0]!;
      this.downloading++;
      void this.download(item).finally(() => {
        this.downloading--;
        this.wake();
      });
    }
  }

  private async download(item: Item): Promise<void> {
    const view = item.view!;
    const rel = this.outputFor(item, view.result?.format);
    try {
      const saved = await this.o.client.download(view.id, join(this.o.outDir, rel), this.downloadAbort.signal);
      this.reachable();
      item.entry = this.o.manifest.record({ ...item.entry, state: 'done', jobId: view.id, output: rel, bytes: saved.bytes, error: undefined });
      this.doneThisRun++;
      this.completions.push(Date.now());
    } catch (err) {
      if (this.downloadAbort.signal.aborted) return; // the manifest still says queued: a rerun downloads it
      if (err instanceof ApiProblemError && (err.status === 404 || err.status === 410)) {
        this.resubmit(item, err.code);
      } else if (err instanceof ApiProblemError && (err.status === 503 || err.status === 429)) {
        this.blockedUntil = Math.max(this.blockedUntil, Date.now() + (err.retryAfterSeconds ?? 1) * 1000);
        item.notBefore = this.blockedUntil;
        this.downloadQueue.push(item);
      } else if (err instanceof GatewayUnreachableError) {
        this.unreachable(err);
        item.notBefore = Date.now() + this.unreachableBackoffMs;
        this.downloadQueue.push(item);
      } else if (item.retries < MAX_TRANSIENT_RETRIES) {
        item.retries++;
        item.notBefore = Date.now() + 500 * 2 ** item.retries;
        this.downloadQueue.push(item);
      } else {
        this.fail(item, err instanceof ApiProblemError ? err.code : 'DOWNLOAD_FAILED', err instanceof Error ? err.message : String(err));
      }
    }
  }

  /** The planned name when the result came back in the expected format; otherwise one for the actual format. */
  private outputFor(item: Item, format: OutputFormat | undefined): string {
    if (!format || item.planned.endsWith(`.${FORMAT_EXTENSIONS[format]}`)) return item.planned;
    const rel = item.photo.rel;
    let name = outputRel(rel, format, false);
    const owner = this.claims.get(name.toLowerCase());
    if (owner !== undefined && owner !== rel) name = outputRel(rel, format, true);
    this.claims.set(name.toLowerCase(), rel);
    return name;
  }

  // ---- outcomes ---------------------------------------------------------------------------------------------------

  private transient(item: Item, code: string, message: string): void {
    if (item.retries >= MAX_TRANSIENT_RETRIES) return this.fail(item, code, message);
    item.retries++;
    item.notBefore = Date.now() + 500 * 2 ** item.retries;
    this.retry.push(item);
  }

  private fail(item: Item, code: string, message: string): void {
    this.outstanding.delete(item.photo.rel);
    this.polling.delete(item.photo.rel);
    item.entry = this.o.manifest.record({ ...item.entry, state: 'failed', error: { code, message } });
    this.failed.push({ rel: item.photo.rel, code, message, ...(item.entry.jobId ? { jobId: item.entry.jobId } : {}) });
  }

  private reachable(): void {
    this.unreachableSince = undefined;
    this.unreachableBackoffMs = 250;
  }

  /** Everything waits with a growing pause; past the give-up time the run ends (exit 3, manifest saved). */
  private unreachable(err: GatewayUnreachableError): void {
    const now = Date.now();
    this.unreachableSince ??= now;
    if (now - this.unreachableSince > this.o.unreachableGiveUpMs) {
      this.fatal ??= err;
      this.wake();
      return;
    }
    this.unreachableBackoffMs = Math.min(8000, this.unreachableBackoffMs * 2);
    this.blockedUntil = Math.max(this.blockedUntil, now + this.unreachableBackoffMs);
  }

  private report(): BatchReport {
    const elapsedMs = Date.now() - this.startedAt;
    const failedByCode: Record<string, number> = {};
    for (const f of this.failed) failedByCode[f.code] = (failedByCode[f.code] ?? 0) + 1;
    const done = this.alreadyDone + this.doneThisRun;
    return {
      source: this.o.source.base,
      out: this.o.outDir,
      manifest: this.o.manifest.path,
      photos: this.o.source.photos.length,
      done,
      doneThisRun: this.doneThisRun,
      alreadyDone: this.alreadyDone,
      reattached: this.reattached,
      submitted: this.submitted,
      resubmitted: this.resubmitted,
      failed: this.failed,
      failedByCode,
      skipped: this.o.source.skipped,
      unfinished: this.o.source.photos.length - done - this.failed.length,
      busy: { total: this.busyTotal, byCode: this.busyByCode },
      window: { max: this.window.max, final: this.window.limit, min: this.window.minSeen, maxSeen: this.window.maxSeen, decreases: this.window.decreases, pausedMs: this.window.pausedMs, trace: this.window.trace },
      interrupted: this.o.stop.aborted,
      elapsedMs,
      photosPerSecond: elapsedMs > 0 ? (this.doneThisRun / elapsedMs) * 1000 : 0,
    };
  }
}
