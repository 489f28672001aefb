import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Job, JobType } from 'bullmq';
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@photoenhance/config';
import {
  ApiError,
  BATCH_ID_PATTERN,
  BULL_STATES_OF_STATUS,
  JOB_ID_PATTERN,
  decodeJobError,
  statusOfBullState,
  type BatchView,
  type JobData,
  type JobDetail,
  type JobResult,
  type JobRow,
  type JobStatus,
} from '@photoenhance/contracts';
import { bullKeys, engineStarts, keys, prefetchedJobs } from '@photoenhance/queue';
import { overview } from './overview.js';
import { withLocalFile } from '@photoenhance/storage';
import { sendStored } from '../stored-files.js';
import { loadSharp } from '../upload.js';

/** Our job statuses as BullMQ states: the one mapping, from @photoenhance/contracts. */
const STATE_GROUPS = BULL_STATES_OF_STATUS;
const LIST_ORDER = ['active', 'queued', 'failed', 'completed'] as const;
const THUMB_PX = 320;
const MAX_PAGE_SIZE = 200;
/** Retry failed: 100 jobs a round, at most this many rounds per request. */
const MAX_RETRY_ROUNDS = 1000;

function iso(ms: number | undefined | null): string | undefined {
  return ms ? new Date(ms).toISOString() : undefined;
}

/** `engineAt`: when the attempt reached its engine (engine-start.ts), when known; a queued row has no start. */
function row(job: Job<JobData, JobResult>, status: JobStatus, engineAt?: number): JobRow {
  const d = job.data;
  const r: JobRow = {
    id: d?.id ?? String(job.id),
    engine: d?.engine ?? '',
    status,
    progress: status === 'completed' ? 1 : typeof job.progress === 'number' ? job.progress : 0,
    attempts: job.attemptsStarted ?? job.attemptsMade,
  };
  const created = iso(d?.createdAt ?? job.timestamp);
  if (created) r.createdAt = created;
  const started = status === 'queued' ? undefined : iso(engineAt ?? job.processedOn);
  if (started) r.startedAt = started;
  const finished = iso(job.finishedOn);
  if (finished && (status === 'completed' || status === 'failed')) r.finishedAt = finished;

  if (d?.input) r.input = { name: d.input.name, width: d.input.width, height: d.input.height, bytes: d.input.bytes };
  const err = status === 'failed' || status === 'queued' ? decodeJobError(job.failedReason) : undefined;
  // A job canceled while it ran sits in BullMQ's failed set; the API calls it canceled, and so does the list.
  if (err?.code === 'JOB_CANCELED' && status === 'failed') {
    r.status = 'canceled';
    return r;
  }
  if (err) r.error = err;
  return r;
}

function checkId(id: string): void {
  if (!JOB_ID_PATTERN.test(id)) throw new ApiError('JOB_NOT_FOUND', `No job with id ${JSON.stringify(id.slice(0, 80))}`);
}

/** The dashboard's JSON API and its live stream, read from the observer and the job services. */
export function dashboardApi(fastify: FastifyInstance): void {
  // Route schemas in TypeBox: they validate, type req.params/query/body (type provider) and document the route.
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const { observer, dashboardStream: stream } = app;
  const engineOf = async (name: string): Promise<string> => {
    const names = (await app.engines.list()).map((e) => e.name);
    if (!names.includes(name))
      throw new ApiError('UNKNOWN_ENGINE', `There is no engine "${name}"; available: ${names.join(', ')}`, {
        extensions: { engine: name, available: names },
      });
    return name;
  };
  const tags = ['operator'];

  app.get('/dashboard/api/events', { schema: { hide: true } }, async (req, reply) => {
    stream.open(req, reply);
    return reply;
  });

  app.get(
    '/dashboard/api/overview',
    { schema: { tags, summary: 'Queue counts, throughput, wait/run percentiles, hosts and their timeline' } },
    async () => {
      await observer.refresh();
      return { ...overview(observer), samples: observer.samples };
    },
  );

  app.get(
    '/dashboard/api/jobs',
    {
      schema: {
        tags,
        summary: 'Recent jobs, filtered by state and engine, paginated on the server',
        querystring: Type.Object(
          {
            state: Type.Optional(Type.Union([Type.Literal('all'), ...LIST_ORDER.map((s) => Type.Literal(s))], { default: 'all' })),
            engine: Type.Optional(Type.String()),
            page: Type.Optional(Type.Integer({ minimum: 1, default: 1 })),
            pageSize: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_PAGE_SIZE, default: 25 })),
          },
          { additionalProperties: false },
        ),
      },
    },
    async (req) => {
      const { state = 'all', page = 1, pageSize = 25 } = req.query;
      const engines =
        req.query.engine && req.query.engine !== 'all' ? [await engineOf(req.query.engine)] : (await app.engines.list()).map((e) => e.name);
      const groups = state === 'all' ? [...LIST_ORDER] : [state];
      // The list is a concatenation of segments (status group × engine × BullMQ state), newest first inside each; only the
      // segments the page overlaps are read, so a page costs O(pageSize) whatever the queue length.
      // BullMQ-active jobs split in two: at an engine (active) and prefetched (queued, listed first); both lists are short,
      // so their segments carry their ids.
      const segments: Array<{ engine: string; status: JobStatus; bullState: JobType; count: number; ids?: string[] }> = [];
      const split = new Map<string, { running: string[]; prefetched: string[] }>();
      const activeSplit = async (engine: string): Promise<{ running: string[]; prefetched: string[] }> => {
        let s = split.get(engine);
        if (!s) {
          const [all, pre] = await Promise.all([app.redis.lrange(bullKeys(engine).active, 0, -1), prefetchedJobs(app.redis, engine)]);
          s = { running: all.filter((id) => !pre.includes(id)), prefetched: all.filter((id) => pre.includes(id)) };
          split.set(engine, s);
        }
        return s;
      };
      for (const status of groups) {
        for (const engine of engines) {
          const q = app.jobs.queue(engine);
          if (status === 'active' || status === 'queued') {
            const s = await activeSplit(engine);
            const ids = status === 'active' ? s.running : s.prefetched;
            if (ids.length) segments.push({ engine, status, bullState: 'active', count: ids.length, ids });
            if (status === 'active') continue;
          }
          const counts = await q.getJobCounts(...STATE_GROUPS[status]);
          for (const bullState of STATE_GROUPS[status])
            if ((counts[bullState] ?? 0) > 0) segments.push({ engine, status, bullState, count: counts[bullState]! });
        }
      }
      const total = segments.reduce((n, s) => n + s.count, 0);
      const start = (page - 1) * pageSize;
      const end = start + pageSize;
      const jobs: JobRow[] = [];
      let offset = 0;
      for (const s of segments) {
        const segStart = offset;
        offset += s.count;
        if (offset <= start || segStart >= end) continue;
        const from = Math.max(start - segStart, 0);
        const to = Math.min(end - segStart, s.count) - 1;
        if (s.ids) {
          const ids = s.ids.slice(from, to + 1);
          const [found, starts] = await Promise.all([
            Promise.all(ids.map((id) => app.jobs.queue(s.engine).getJob(id))),
            engineStarts(app.redis, s.engine, ids),
          ]);
          found.forEach((job, i) => {
            if (job) jobs.push(row(job as Job<JobData, JobResult>, s.status, starts[i]));
          });
          continue;
        }
        const found = (await app.jobs.queue(s.engine).getJobs([s.bullState], from, to, false)) as Array<
          Job<JobData, JobResult> | undefined
        >;
        for (const job of found) if (job) jobs.push(row(job, s.status));
      }
      return { total, page, pageSize, pages: Math.max(1, Math.ceil(total / pageSize)), jobs };
    },
  );

  // Ids are checked by checkId (a malformed one is an unknown job: 404 JOB_NOT_FOUND, as on /v1/jobs/:id).
  const idParams = Type.Object({ id: Type.String() });
  app.get(
    '/dashboard/api/jobs/:id',
    { schema: { tags, params: idParams, summary: 'One job: view, engine log lines, attempts, timings, thumbnails' } },
    async (req) => {
      checkId(req.params.id);
      const { view, job } = await app.jobs.find(req.params.id);
      const logs = job
        ? await app.jobs
            .queue(view.engine)
            .getJobLogs(view.id, 0, 499, true)
            .catch(() => ({ logs: [] as string[], count: 0 }))
        : { logs: [], count: 0 };
      const rv = job?.returnvalue as JobResult | null | undefined;
      const base = `/dashboard/api/jobs/${view.id}/thumbs`;
      const detail: JobDetail = {
        view,
        logs: logs.logs,
        logCount: logs.count,
        attemptsMade: job?.attemptsMade ?? 0,
        attemptsStarted: job?.attemptsStarted ?? 0,
        maxAttempts: job?.opts.attempts ?? 1,
        failedReason: job?.failedReason ?? null,
        stacktrace: (job?.stacktrace ?? []).slice(-3),
        engineRun: rv ? { engine: rv.engine, timings: rv.timings } : null,
        thumbnails: {
          input: view.status === 'canceled' ? null : `${base}/input`,
          output: view.status === 'completed' ? `${base}/output` : null,
        },
      };
      return detail;
    },
  );

  app.get(
    '/dashboard/api/jobs/:id/thumbs/:which',
    { schema: { hide: true, params: Type.Object({ id: Type.String(), which: Type.String() }) } },
    async (req, reply) => {
      checkId(req.params.id);
      const which = req.params.which;
      if (which !== 'input' && which !== 'output')
        throw new ApiError('ROUTE_NOT_FOUND', `No thumbnail "${which.slice(0, 20)}" (input or output)`);
      const { view, job } = await app.jobs.find(req.params.id);
      const key =
        which === 'input'
          ? job?.data.input.key
          : view.status === 'completed'
            ? (job?.returnvalue as JobResult | undefined)?.key
            : undefined;
      if (!key) throw new ApiError('JOB_NOT_COMPLETED', `Job ${view.id} has no ${which} image (it is ${view.status})`);
      const thumb = `${view.id}/thumb-${which}.webp`;
      // Made once, small, next to the job's files in storage (deleted with them); never the full image.
      if (!(await app.storage.stat(thumb))) {
        const made = await withTempDir(async (dir) => {
          const tmp = join(dir, 'thumb.webp');
          // sharp is loaded on the first thumbnail, not at start (see loadSharp).
          const sharp = await loadSharp();
          const found = await withLocalFile(app.storage, key, async (source) => {
            await sharp(source, { limitInputPixels: 400_000_000 })
              .rotate()
              .resize({ width: THUMB_PX, height: THUMB_PX, fit: 'inside', withoutEnlargement: true })
              .webp({ quality: 72 })
              .toFile(tmp);
            return true;
          }).catch((err: unknown) => {
            if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
            throw err;
          });
          if (found) await app.storage.putFile(thumb, tmp, { contentType: 'image/webp' });
          return found;
        });
        if (!made) throw new ApiError('JOB_EXPIRED', `The ${which} image of job ${view.id} is no longer stored`);
      }
      const sent = await sendStored(app.storage, req, reply, thumb, { contentType: 'image/webp', cacheControl: 'private, max-age=3600' });
      if (!sent) throw new ApiError('JOB_EXPIRED', `The ${which} image of job ${view.id} is no longer stored`);
      return sent;
    },
  );

  // --- batches ---
  app.get(
    '/dashboard/api/batches',
    {
      schema: {
        tags,
        summary: 'Most recent batches (summaries, newest first)',
        querystring: Type.Object({ limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 20 })) }),
      },
    },
    async (req) => {
      // Newest first, from the batch index (never a keyspace scan).
      const newest = (await app.redis.zrevrange(keys.batchIndex, 0, (req.query.limit ?? 20) - 1)).filter((id) => BATCH_ID_PATTERN.test(id));
      const views = await Promise.all(newest.map((id) => app.batches.view(id).catch(() => undefined)));
      return {
        available: true,
        batches: views
          .filter((v): v is BatchView => Boolean(v))
          .map(({ items, ...summary }) => ({
            ...summary,
            failedItems: items.filter((i) => i.status === 'failed').slice(0, 50),
            // Every item (the page filters by state); bounded by MAX_BATCH_ITEMS.
            items: items.map((i) => ({
              index: i.index,
              name: i.name,
              status: i.status,
              progress: i.progress,
              ...(i.jobId ? { jobId: i.jobId } : {}),
              ...(i.error ? { error: i.error } : {}),
            })),
          })),
      };
    },
  );

  // --- operator actions (guarded by the operator credential, like everything under /dashboard) ---
  const action = { tags, params: Type.Object({ engine: Type.String() }) };

  app.post(
    '/dashboard/api/queues/:engine/pause',
    { schema: { ...action, summary: 'Pause the engine queue (workers finish active jobs, take no new ones)' } },
    async (req) => {
      const engine = await engineOf(req.params.engine);
      await app.jobs.queue(engine).pause();
      await observer.refresh();
      return { engine, paused: true };
    },
  );

  app.post('/dashboard/api/queues/:engine/resume', { schema: { ...action, summary: 'Resume the engine queue' } }, async (req) => {
    const engine = await engineOf(req.params.engine);
    await app.jobs.queue(engine).resume();
    await observer.refresh();
    return { engine, paused: false };
  });

  app.post(
    '/dashboard/api/queues/:engine/retry-failed',
    { schema: { ...action, summary: 'Retry every failed job of the engine queue' } },
    async (req) => {
      const engine = await engineOf(req.params.engine);
      const q = app.jobs.queue(engine);
      // Not the jobs canceled while they ran: they sit in BullMQ's failed set, but they are canceled, not failed.
      let retried = 0;
      let skipped = 0;
      for (let round = 0; round < MAX_RETRY_ROUNDS; round++) {
        const page = (await q.getJobs(['failed'], skipped, skipped + 99, true)).filter((j): j is Job => Boolean(j?.id));
        if (page.length === 0) break;
        const canceled = page.filter((j) => decodeJobError(j.failedReason)?.code === 'JOB_CANCELED');
        skipped += canceled.length;
        const results = await Promise.allSettled(page.filter((j) => !canceled.includes(j)).map((j) => j.retry('failed')));
        const ok = results.filter((r) => r.status === 'fulfilled').length;
        retried += ok;
        // Nothing left to retry on this page (every retry failed: the jobs moved meanwhile): stop rather than loop.
        if (ok === 0 && canceled.length === 0) break;
      }
      await observer.refresh();
      return { engine, retried };
    },
  );

  app.post(
    '/dashboard/api/queues/:engine/drain',
    {
      schema: {
        ...action,
        summary: 'Cancel every waiting job of the engine queue (their files are deleted); active jobs finish',
        body: Type.Object(
          { confirm: Type.String({ description: 'The engine name again, as a confirmation.' }) },
          { additionalProperties: false },
        ),
      },
    },
    async (req) => {
      const engine = await engineOf(req.params.engine);
      if (req.body.confirm !== engine) throw new ApiError('INVALID_REQUEST', `To drain, send {"confirm": "${engine}"}`);
      const q = app.jobs.queue(engine);
      let canceled = 0;
      // Cancel one page at a time through the job service, so each job gets its tombstone and loses its files.
      for (let round = 0; round < 1000; round++) {
        const page = await q.getJobs(['waiting', 'prioritized', 'delayed', 'paused'], 0, 99, true);
        const ids = page.filter((j): j is Job => Boolean(j?.id)).map((j) => String(j.id));
        if (ids.length === 0) break;
        const results = await Promise.allSettled(ids.map((id) => app.jobs.cancel(id)));
        canceled += results.filter((r) => r.status === 'fulfilled').length;
        if (results.every((r) => r.status === 'rejected')) break;
      }
      await observer.refresh();
      return { engine, canceled };
    },
  );

  app.post(
    '/dashboard/api/jobs/:id/cancel',
    { schema: { tags, params: idParams, summary: 'Cancel a job (same as DELETE /v1/jobs/:id)' } },
    async (req) => {
      checkId(req.params.id);
      const view = await app.jobs.cancel(req.params.id);
      await observer.refresh();
      return view;
    },
  );

  app.post('/dashboard/api/jobs/:id/retry', { schema: { tags, params: idParams, summary: 'Retry a failed job' } }, async (req) => {
    checkId(req.params.id);
    const { view, job } = await app.jobs.find(req.params.id);
    if (view.status !== 'failed' || !job)
      throw new ApiError('INVALID_REQUEST', `Only failed jobs can be retried; job ${view.id} is ${view.status}`, { status: 409 });
    await job.retry('failed');
    await observer.refresh();
    const state = await job.getState();
    return { id: view.id, status: statusOfBullState(state) };
  });
}

async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'pe-thumb-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
