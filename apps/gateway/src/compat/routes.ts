import type { FastifyError, FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import {
  ApiError,
  BATCH_ID_PATTERN,
  FORMAT_CONTENT_TYPES,
  FORMAT_EXTENSIONS,
  JOB_ID_PATTERN,
  type BatchStatus,
  type JobView,
} from '@photoenhance/contracts';
import { keys } from '@photoenhance/queue';
import { clientIdentity } from '../client-id.js';
import { ResultNames } from '../batches/batch-service.js';
import { sendResultsZip } from '../batches/routes.js';
import { lingerOnClose, redisUnavailable } from '../problems.js';
import { contentDisposition, downloadName, sendStored } from '../stored-files.js';

/**
 * PhotoEnhanceAI-compatible routes (their field names, status words, 0-1 progress, epoch seconds, `{"detail": ...}`
 * errors), backed by the same queue and batches as the native API.
 *
 * `tile_size` (256-512; left out: the automatic tile, 400 without a GPU) and `quality_level` (fast|medium|high, default high) are read from the query string
 * and from form fields (a form field wins). Mapping onto native options:
 *   tile_size → bgTile;  fast → bgUpsampler none, scale 2 (faces restored, background resized plainly);
 *   medium → bgUpsampler realesrgan, scale 2, quality 85;  high → bgUpsampler realesrgan, scale 2, quality 95.
 * Output keeps the input's format (a PNG stays a PNG). Differences from PhotoEnhanceAI, on purpose: task ids are the
 * gateway's job ids; a deleted task disappears (404) and only its own files are deleted; the task list shows only the
 * caller's tasks when API keys are in use; with keys, every route here but /health needs one (401) and another key's
 * task or batch answers 404 like an unknown one (auth/api-keys.ts).
 */
const EXTENSIONS = new Set(['.jpg', '.jpeg', '.png', '.bmp', '.tiff', '.tif', '.webp']);
const COMPAT_MAX_BATCH_FILES = 20;
const TASK_LIST_LIMIT = 200;

const QUALITY: Record<string, Record<string, string>> = {
  fast: { bgUpsampler: 'none', scale: '2' },
  medium: { bgUpsampler: 'realesrgan', scale: '2', quality: '85' },
  high: { bgUpsampler: 'realesrgan', scale: '2', quality: '95' },
};

class CompatError extends Error {
  constructor(
    readonly status: number,
    readonly detail: unknown,
    readonly headers: Record<string, string> = {},
  ) {
    super(typeof detail === 'string' ? detail : 'error');
  }
}

/** Native problems → PhotoEnhanceAI status codes. */
function fromApiError(err: ApiError): CompatError {
  const statusByCode: Partial<Record<string, number>> = {
    UNSUPPORTED_MEDIA_TYPE: 400,
    IMAGE_UNREADABLE: 400,
    IMAGE_DIMENSIONS_TOO_LARGE: 400,
    IMAGE_DIMENSIONS_TOO_SMALL: 400,
    IMAGE_ASPECT_RATIO_TOO_EXTREME: 400,
    UNEXPECTED_FIELD: 400,
    BATCH_TOO_LARGE: 400,
    IMAGE_REQUIRED: 422,
    MULTIPART_REQUIRED: 422,
    INVALID_OPTION: 422,
  };
  // Not found, expired and another key's are one answer, as for an unknown id (no existence oracle).
  if (err.code === 'JOB_NOT_FOUND' || err.code === 'JOB_EXPIRED') return new CompatError(404, 'Task not found', err.headers);
  if (err.code === 'BATCH_NOT_FOUND') return new CompatError(404, 'Batch task not found', err.headers);
  return new CompatError(statusByCode[err.code] ?? err.status, err.message, err.headers);
}

function mapParams(query: Record<string, unknown>): (fields: Record<string, string>) => Record<string, string> {
  return (fields) => {
    const pick = (name: string): string | undefined =>
      fields[name] ?? (typeof query[name] === 'string' ? (query[name] as string) : undefined);
    // No tile_size: bgTile left unset, so the worker sizes the tile for its GPU (400 without one, PhotoEnhanceAI's default).
    const tile = pick('tile_size');
    const quality = (pick('quality_level') ?? 'high').trim().toLowerCase();
    const n = Number(tile);
    if (tile !== undefined && (!Number.isInteger(n) || n < 256 || n > 512))
      throw new CompatError(422, `tile_size must be an integer from 256 to 512; received ${JSON.stringify(tile)}`);
    const mapped = QUALITY[quality];
    if (!mapped) throw new CompatError(422, `quality_level must be one of fast, medium, high; received ${JSON.stringify(quality)}`);
    // Other form fields are ignored, as PhotoEnhanceAI does.
    return { ...mapped, ...(tile !== undefined ? { bgTile: String(n) } : {}) };
  };
}

function assertExtension(name: string): void {
  const m = /\.[^.]*$/.exec(name);
  if (m && !EXTENSIONS.has(m[0].toLowerCase()))
    throw new CompatError(400, `Unsupported file type ${m[0]}; send ${[...EXTENSIONS].join(', ')}`);
}

const epoch = (iso: string | undefined): number | null => (iso ? Date.parse(iso) / 1000 : null);

const TASK_STATUS: Record<string, string> = { queued: 'queued', active: 'processing', completed: 'completed', failed: 'failed' };
const BATCH_STATUS: Record<BatchStatus, string> = {
  queued: 'queued',
  running: 'processing',
  completed: 'completed',
  failed: 'failed',
  partial: 'partial_completed',
  canceled: 'failed',
};

function taskView(view: JobView): Record<string, unknown> {
  const status = TASK_STATUS[view.status] ?? 'failed';
  const messages: Record<string, string> = {
    queued: 'Task is queued',
    processing: 'Task is being processed',
    completed: 'Enhancement completed',
    failed: `Enhancement failed${view.error ? `: ${view.error.message}` : ''}`,
  };
  return {
    task_id: view.id,
    status,
    message: messages[status],
    progress: view.progress,
    result_url: view.status === 'completed' ? `/api/v1/download/${view.id}` : null,
    error: view.error ? `${view.error.code}: ${view.error.message}` : null,
    created_at: epoch(view.createdAt),
    updated_at: epoch(view.finishedAt ?? view.startedAt ?? view.createdAt),
    processing_time: view.timings?.runMs !== undefined ? view.timings.runMs / 1000 : null,
  };
}

/** The task list scope: everyone's when no keys are configured; the caller's key otherwise; nothing without a valid key. */
function listScope(app: FastifyInstance, req: FastifyRequest): string | undefined {
  if (app.config.apiKeys.length === 0) return 'shared';
  const who = clientIdentity(req, app.config.apiKeys);
  return who.kind === 'key' ? who.id : undefined;
}

/** Registered as its own plugin: its error handler answers `{"detail": ...}` on these routes only. */
export const compatRoutes: FastifyPluginAsync = async (compat) => {
  compat.setErrorHandler((error: FastifyError | ApiError | CompatError | Error, req: FastifyRequest, reply: FastifyReply) => {
    let e: CompatError;
    if (error instanceof CompatError) e = error;
    else if (error instanceof ApiError) e = fromApiError(error);
    else if ((error as FastifyError).statusCode === 413 || (error as FastifyError).code === 'FST_REQ_FILE_TOO_LARGE')
      e = new CompatError(413, 'File too large');
    else if ((error as FastifyError).code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE')
      e = new CompatError(422, 'Send the photo as multipart/form-data');
    else {
      req.log.error({ err: error }, 'unhandled error (compat route)');
      e = new CompatError(500, `Internal error (request id ${req.id})`);
    }
    for (const [k, v] of Object.entries(e.headers)) reply.header(k, v);
    if (e.headers.connection === 'close') lingerOnClose(reply);
    return reply.code(e.status).type('application/json; charset=utf-8').send({ detail: e.detail });
  });

  compat.get('/health', async () => {
    const hosts = await compat.engines.hosts().catch(() => []);
    let active = 0;
    if (compat.redisReady()) {
      for (const e of await compat.engines.list().catch(() => []))
        active += await compat.jobs
          .queue(e.name)
          .getActiveCount()
          .catch(() => 0);
    }
    return {
      status: 'healthy',
      timestamp: Date.now() / 1000,
      active_tasks: active,
      model_status: { initialized: hosts.length > 0, cuda_available: false, device: hosts.length > 0 ? 'workers' : 'none' },
    };
  });

  compat.post<{ Querystring: Record<string, string> }>('/api/v1/enhance', async (req) => {
    const { accepted } = await compat.intake.acceptJob(req, {
      fileField: 'file',
      mapFields: mapParams(req.query),
      native: false,
      checkName: assertExtension,
    });
    await indexTask(compat, req, accepted.id);
    return {
      task_id: accepted.id,
      status: 'queued',
      message: 'Task created, processing will start when a worker is free',
      created_at: epoch(accepted.createdAt),
    };
  });

  compat.get<{ Params: { task_id: string } }>('/api/v1/status/:task_id', async (req) =>
    taskView(await findTask(compat, req.params.task_id)),
  );

  compat.get<{ Params: { task_id: string } }>('/api/v1/download/:task_id', async (req, reply) => {
    const id = req.params.task_id;
    const view = await findTask(compat, id);
    const { job } = await compat.jobs.find(id);
    if (view.status !== 'completed' || !job?.returnvalue)
      throw new CompatError(400, `Task is not completed (status: ${TASK_STATUS[view.status] ?? view.status})`);
    const result = job.returnvalue;
    const sent = await sendStored(compat.storage, req, reply, result.key, {
      contentType: FORMAT_CONTENT_TYPES[result.format],
      contentDisposition: contentDisposition(downloadName(view.input.name, FORMAT_EXTENSIONS[result.format])),
    });
    if (!sent) throw new CompatError(404, 'Result file not found');
    return sent;
  });

  compat.delete<{ Params: { task_id: string } }>('/api/v1/tasks/:task_id', async (req) => {
    const id = req.params.task_id;
    await findTask(compat, id);
    // Only this job: its queue entry and its own folder under the storage root.
    await compat.jobs.cancel(id);
    await compat.redis.zrem(keys.compatTasks(listScope(compat, req) ?? 'anonymous'), id);
    return { message: `Task ${id} deleted` };
  });

  compat.get('/api/v1/tasks', async (req) => {
    const scope = listScope(compat, req);
    if (!scope) return { total_tasks: 0, tasks: [] };
    const ids = await compat.redis.zrevrange(keys.compatTasks(scope), 0, TASK_LIST_LIMIT - 1);
    const tasks: Array<Record<string, unknown>> = [];
    for (const id of ids) {
      try {
        tasks.push(taskView(await findTask(compat, id)));
      } catch {
        await compat.redis.zrem(keys.compatTasks(scope), id);
      }
    }
    return { total_tasks: tasks.length, tasks };
  });

  compat.post<{ Querystring: Record<string, string> }>('/api/v1/enhance/batch', async (req) => {
    const { accepted, jobIds } = await compat.intake.acceptBatch(req, {
      imageField: 'files',
      maxItems: COMPAT_MAX_BATCH_FILES,
      mapFields: mapParams(req.query),
      native: false,
      source: 'compat',
      refuseBadItems: true,
      checkName: assertExtension,
    });
    for (const id of jobIds) if (id) await indexTask(compat, req, id);
    return {
      batch_task_id: accepted.id,
      total_files: accepted.total,
      status: 'queued',
      message: `Batch created with ${accepted.total} files`,
      created_at: epoch(accepted.createdAt),
      sub_tasks: jobIds.filter((x): x is string => Boolean(x)),
    };
  });

  compat.get<{ Params: { id: string } }>('/api/v1/batch/status/:id', async (req) => {
    const view = await compat.batches.view(checkBatch(req.params.id));
    const status = BATCH_STATUS[view.status];
    return {
      batch_task_id: view.id,
      status,
      total_files: view.total,
      completed_files: view.counts.completed,
      failed_files: view.counts.failed + view.counts.canceled,
      progress: view.progress,
      sub_tasks: view.items.map((i) => ({
        task_id: i.jobId ?? null,
        status: TASK_STATUS[i.status] ?? 'failed',
        filename: i.name,
        progress: i.progress,
        error: i.error ? `${i.error.code}: ${i.error.message}` : null,
      })),
      created_at: epoch(view.createdAt),
      updated_at: epoch(view.updatedAt),
      message: `${view.counts.completed} of ${view.total} files completed, ${view.counts.failed + view.counts.canceled} failed`,
    };
  });

  compat.get<{ Params: { id: string } }>('/api/v1/batch/download/:id', async (req, reply) => {
    const id = checkBatch(req.params.id);
    const { rec, items } = await compat.batches.record(id);
    const states = await compat.batches.itemStates(rec, items);
    const status = compat.batches.summarize(rec, states).status;
    if (status !== 'completed' && status !== 'partial')
      throw new CompatError(400, `Batch is not completed (status: ${BATCH_STATUS[status]})`);
    // Their original names, with the output's extension, made unique.
    const names = new ResultNames();
    return sendResultsZip(compat.storage, reply, states, `batch_results_${id}.zip`, (s) =>
      originalName(names, s.view.name, s.view.resultName),
    );
  });
};

function originalName(names: ResultNames, name: string, resultName: string): string {
  const ext = /\.([^.]+)$/.exec(resultName)?.[1] ?? 'png';
  const stem = name.replace(/\.[^.]*$/, '') || 'photo';
  return names.next(`${stem}.${ext}`, ext).replace(/_enhanced( \(\d+\))?\./, (_m, n: string | undefined) => `${n ?? ''}.`);
}

function checkBatch(id: string): string {
  if (!BATCH_ID_PATTERN.test(id)) throw new CompatError(404, 'Batch task not found');
  return id;
}

async function findTask(app: FastifyInstance, id: string): Promise<JobView> {
  if (!JOB_ID_PATTERN.test(id)) throw new CompatError(404, 'Task not found');
  if (!app.redisReady()) throw redisUnavailable();
  try {
    const { view } = await app.jobs.find(id);
    // A deleted (canceled) task is gone, as in PhotoEnhanceAI.
    if (view.status === 'canceled') throw new CompatError(404, 'Task not found');
    return view;
  } catch (err) {
    if (err instanceof ApiError && (err.code === 'JOB_NOT_FOUND' || err.code === 'JOB_EXPIRED'))
      throw new CompatError(404, 'Task not found');
    throw err;
  }
}

async function indexTask(app: FastifyInstance, req: FastifyRequest, id: string): Promise<void> {
  const scope = listScope(app, req) ?? 'anonymous';
  const k = keys.compatTasks(scope);
  await app.redis.multi().zadd(k, Date.now(), id).expire(k, app.config.jobTtlSeconds).exec();
}
