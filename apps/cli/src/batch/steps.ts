import { join } from 'node:path';
import { FORMAT_EXTENSIONS, type JobView, type OutputFormat } from '@photoenhance/contracts';
import { ApiProblemError, GatewayUnreachableError, type PhotoEnhanceClient, type SubmitOptions } from '@photoenhance/client';
import { outputRel } from './inputs.js';
import type { Manifest } from './manifest.js';
import type { Item } from './plan.js';
import type { Scheduler } from './scheduler.js';
import type { Tally } from './tally.js';

/** What a step does with a photo it cannot finish itself; the runner decides (and records it in the manifest). */
export interface Outcomes {
  /** The photo failed for good (this run). */
  fail(item: Item, code: string, message: string): void;
  /** A 5xx or similar: try again a few times with a growing pause, then fail. */
  transient(item: Item, code: string, message: string): void;
  /** The gateway no longer knows the job: submit the photo afresh with a new key. */
  resubmit(item: Item, why: string): void;
}

export interface StepContext {
  client: PhotoEnhanceClient;
  manifest: Manifest;
  scheduler: Scheduler;
  tally: Tally;
  outcomes: Outcomes;
}

const FINAL = new Set(['completed', 'failed', 'canceled']);
const MAX_TRANSIENT_RETRIES = 3;
/** 409s (about one a second) before a key is given up for a fresh one. */
const MAX_IN_FLIGHT_ANSWERS = 30;

/** Growing pause before the next try of a transient failure; false once the tries are used up. */
export function backOff(item: Item): boolean {
  if (item.retries >= MAX_TRANSIENT_RETRIES) return false;
  item.retries++;
  item.notBefore = Date.now() + 500 * 2 ** item.retries;
  return true;
}

/** Uploads: one submission per photo, the manifest written before each step so a crash resends with the same key. */
export class Submitter {
  private readonly inflight = new Set<Promise<void>>();
  private readonly abort = new AbortController();

  constructor(
    private readonly ctx: StepContext,
    private readonly options: SubmitOptions,
    /** Called with each accepted photo: its job is polled from now on. */
    private readonly onAccepted: (item: Item) => void,
  ) {}

  /** Start every submission the scheduler allows now. */
  launch(): void {
    const { scheduler } = this.ctx;
    for (;;) {
      const item = scheduler.next(Date.now());
      if (!item) return;
      const p = this.submit(item).finally(() => {
        this.inflight.delete(p);
        scheduler.wake();
      });
      this.inflight.add(p);
    }
  }

  /** After Ctrl-C: give in-flight uploads a moment to be answered (their job ids get recorded), then abort them. */
  async settle(graceMs: number): Promise<void> {
    if (this.inflight.size === 0) return;
    const grace = new Promise<void>((r) => setTimeout(r, graceMs).unref());
    await Promise.race([Promise.allSettled([...this.inflight]), grace]);
    this.abort.abort(new Error('interrupted'));
    await Promise.allSettled([...this.inflight]);
  }

  private async submit(item: Item): Promise<void> {
    const { client, manifest, scheduler, tally, outcomes } = this.ctx;
    const rel = item.photo.rel;
    scheduler.outstanding.set(rel, item);
    if (item.entry.state !== 'submitting' || item.entry.jobId) item.entry = { ...item.entry, state: 'submitting', jobId: undefined };
    // Recorded before sending: a crash from here on resends with this same key.
    item.entry = manifest.record(item.entry);
    const sentAt = Date.now();
    try {
      const accepted = await client.submit(item.photo.abs, this.options, { idempotencyKey: item.entry.key, signal: this.abort.signal });
      scheduler.reachable();
      item.entry = manifest.record({ ...item.entry, state: 'queued', jobId: accepted.id });
      tally.submitted++;
      scheduler.window.onAccepted();
      this.onAccepted(item);
    } catch (err) {
      scheduler.outstanding.delete(rel);
      if (this.abort.signal.aborted) return; // stopped mid-upload: the manifest says `submitting`, a rerun resends
      if (err instanceof ApiProblemError) {
        scheduler.reachable();
        if (err.code === 'NO_WORKER_FOR_ENGINE') {
          // Waiting will not start a worker: end the run with the gateway's words (manifest saved; rerun once one runs).
          scheduler.retry.unshift(item);
          scheduler.fail(err);
        } else if (err.status === 503 || err.status === 429) {
          tally.busy(err.code);
          scheduler.window.onBusy(sentAt, Date.now(), err.retryAfterSeconds);
          scheduler.retry.unshift(item);
        } else if (err.status === 409) {
          // The same key is still being accepted on the gateway (a first upload cut off by a crash may hold it for a
          // while): ask again later; after a while give up on that key and submit afresh.
          if (++item.inFlightAnswers > MAX_IN_FLIGHT_ANSWERS) {
            outcomes.resubmit(item, err.code);
          } else {
            item.notBefore = Date.now() + (err.retryAfterSeconds ?? 1) * 1000;
            scheduler.retry.push(item);
          }
        } else if (err.status >= 500) {
          outcomes.transient(item, err.code, err.detail);
        } else {
          outcomes.fail(item, err.code, err.detail);
        }
      } else if (err instanceof GatewayUnreachableError) {
        scheduler.unreachable(err);
        scheduler.retry.unshift(item);
      } else {
        const code = (err as NodeJS.ErrnoException).code;
        const unreadable = code === 'ENOENT' || code === 'EACCES' || code === 'EISDIR';
        outcomes.fail(item, unreadable ? 'INPUT_UNREADABLE' : 'SUBMIT_FAILED', (err as Error).message);
      }
    }
  }
}

/** Status polls of the submitted jobs, on a loop of its own. */
export class Poller {
  /** Items with a job id whose status is polled, oldest first. */
  readonly polling = new Map<string, Item>();
  private wakeUp: (() => void) | undefined;

  constructor(
    private readonly ctx: StepContext,
    private readonly pollMs: number,
    /** Called with each photo whose job completed: its result is downloaded. */
    private readonly onCompleted: (item: Item) => void,
  ) {
    ctx.scheduler.onStop(() => this.wakeUp?.());
  }

  /** Poll until the run stops or ends. */
  async loop(): Promise<void> {
    const { scheduler } = this.ctx;
    while (scheduler.running) {
      if (this.polling.size > 0 && Date.now() >= scheduler.blockedUntil) await this.sweep();
      if (scheduler.stopping) return;
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, this.pollMs);
        function done(): void {
          clearTimeout(t);
          resolve();
        }
        this.wakeUp = done;
      });
      this.wakeUp = undefined;
    }
  }

  /** Stop polling a photo (it failed or is submitted afresh). */
  forget(rel: string): void {
    this.polling.delete(rel);
  }

  /**
   * One look at outstanding jobs, oldest first, eight at a time. Queues are first in, first out, so once a whole group
   * of eight is still waiting the younger ones are too: the sweep stops there.
   */
  private async sweep(): Promise<void> {
    const { client, scheduler } = this.ctx;
    const list = [...this.polling.values()];
    for (let i = 0; i < list.length && !scheduler.stopping && Date.now() >= scheduler.blockedUntil; i += 8) {
      const group = list.slice(i, i + 8);
      const results = await Promise.all(
        group.map((it) =>
          client.get(it.entry.jobId!).then(
            (v) => ({ it, v }),
            (e: unknown) => ({ it, e }),
          ),
        ),
      );
      let allWaiting = true;
      for (const r of results) {
        if ('v' in r) {
          scheduler.reachable();
          if (r.v.status !== 'queued') allWaiting = false;
          this.onView(r.it, r.v);
        } else {
          allWaiting = false;
          this.onError(r.it, r.e);
        }
      }
      scheduler.wake();
      if (allWaiting) return;
    }
  }

  private onView(item: Item, view: JobView): void {
    const { scheduler, outcomes } = this.ctx;
    if (!this.polling.has(item.photo.rel)) return;
    item.view = view;
    if (!FINAL.has(view.status)) return;
    this.polling.delete(item.photo.rel);
    scheduler.outstanding.delete(item.photo.rel);
    if (view.status === 'completed') {
      this.onCompleted(item);
    } else if (view.status === 'canceled') {
      outcomes.fail(item, 'JOB_CANCELED', `job ${view.id} was canceled`);
    } else {
      outcomes.fail(item, view.error?.code ?? 'ENGINE_FAILED', view.error?.message ?? `job ${view.id} failed`);
    }
  }

  private onError(item: Item, err: unknown): void {
    const { scheduler, outcomes } = this.ctx;
    if (err instanceof ApiProblemError) {
      scheduler.reachable();
      if (err.status === 404 || err.status === 410) {
        this.polling.delete(item.photo.rel);
        scheduler.outstanding.delete(item.photo.rel);
        outcomes.resubmit(item, err.code);
      } else if (err.status === 503 || err.status === 429) {
        // Over a rate limit or overloaded: every request of this batch waits its Retry-After.
        scheduler.blockFor(err.retryAfterSeconds);
      }
      // Others: look again on the next sweep.
    } else if (err instanceof GatewayUnreachableError) {
      scheduler.unreachable(err);
    }
  }
}

/** Results of completed jobs, a few at a time, into the output folder. */
export class Downloader {
  readonly queue: Item[] = [];
  private active = 0;
  private readonly abort = new AbortController();

  constructor(
    private readonly ctx: StepContext,
    private readonly outDir: string,
    private readonly concurrency: number,
    /** Output path (lower case) -> the photo that owns it. */
    private readonly claims: Map<string, string>,
  ) {}

  get busy(): boolean {
    return this.active > 0 || this.queue.length > 0;
  }

  get downloading(): number {
    return this.active;
  }

  /** Abort downloads under way (Ctrl-C, the end of the run): the manifest still says queued, a rerun downloads them. */
  stop(reason: string): void {
    this.abort.abort(new Error(reason));
  }

  /** Start every download that is due, up to the concurrency. */
  launch(): void {
    const { scheduler } = this.ctx;
    while (!scheduler.stopping && this.active < this.concurrency) {
      const now = Date.now();
      if (now < scheduler.blockedUntil) return;
      const i = this.queue.findIndex((it) => it.notBefore <= now);
      if (i < 0) return;
      const item = this.queue.splice(i, 1)[0]!;
      this.active++;
      void this.download(item).finally(() => {
        this.active--;
        scheduler.wake();
      });
    }
  }

  private async download(item: Item): Promise<void> {
    const { client, manifest, scheduler, tally, outcomes } = this.ctx;
    const view = item.view!;
    const rel = this.outputFor(item, view.result?.format);
    try {
      const saved = await client.download(view.id, join(this.outDir, rel), this.abort.signal);
      scheduler.reachable();
      item.entry = manifest.record({ ...item.entry, state: 'done', jobId: view.id, output: rel, bytes: saved.bytes, error: undefined });
      tally.done();
    } catch (err) {
      if (this.abort.signal.aborted) return; // the manifest still says queued: a rerun downloads it
      if (err instanceof ApiProblemError && (err.status === 404 || err.status === 410)) {
        outcomes.resubmit(item, err.code);
      } else if (err instanceof ApiProblemError && (err.status === 503 || err.status === 429)) {
        scheduler.blockFor(err.retryAfterSeconds);
        item.notBefore = scheduler.blockedUntil;
        this.queue.push(item);
      } else if (err instanceof GatewayUnreachableError) {
        scheduler.unreachable(err);
        item.notBefore = Date.now() + scheduler.unreachableBackoffMs;
        this.queue.push(item);
      } else if (backOff(item)) {
        this.queue.push(item);
      } else {
        outcomes.fail(
          item,
          err instanceof ApiProblemError ? err.code : 'DOWNLOAD_FAILED',
          err instanceof Error ? err.message : String(err),
        );
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
}
