import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import {
  ApiError,
  FORMAT_CONTENT_TYPES,
  FORMAT_EXTENSIONS,
  JOB_ID_PATTERN,
  jobLinks,
  parseJobOptions,
  resolveFormat,
  type JobAccepted,
  type JobData,
  type JobView,
  type StoredInput,
} from '@photoenhance/contracts';
import { outputKey, withLocalFile } from '@photoenhance/storage';
import type { GatewayContext } from '../context.js';
import { inspectImage, receiveUpload } from '../upload.js';
import { newJobId } from '../job-service.js';
import { redisUnavailable } from '../problems.js';
import { EVENT_ID_PATTERN, compareEventIds, type JobEvent } from '../job-events.js';
import { clientIdentity, ownerOf } from '../client-id.js';
import { Fingerprint, idempotencyKeyOf, type ClaimedKey } from '../idempotency/index.js';
import { takeWebhook } from '../webhooks/url-guard.js';
import { sendStored } from '../stored-files.js';

/** Multipart framing around the file part; a Content-Length above limit + this is refused before reading. */
const MULTIPART_SLACK = 1024 * 1024;

function checkId(id: string): void {
  if (!JOB_ID_PATTERN.test(id)) throw new ApiError('JOB_NOT_FOUND', `No job with id ${JSON.stringify(id.slice(0, 80))}`);
}

export function downloadName(inputName: string, ext: string): string {
  const stem = inputName.replace(/\.[^.]*$/, '') || 'photo';
  return `${stem}_enhanced.${ext}`;
}

export function contentDisposition(name: string): string {
  const ascii = name.replace(/[^\x20-\x7e]/g, '_').replace(/["\\]/g, '_');
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(name)}`;
}

/** Options as parsed from submission fields, before the output format is settled. */
export type ParsedOptions = ReturnType<typeof parseJobOptions>['options'];

/**
 * Validate a stored input against the options and build the job payload. Shared by single jobs, batch items and the
 * compat routes, so every item gets the same checks.
 */
export async function prepareJob(ctx: GatewayContext, p: { id: string; input: StoredInput; engine: string; options: ParsedOptions }): Promise<JobData> {
  // Object storage: inspected from a temp copy (the header and a shrink-on-load decode need a file).
  const dims = await withLocalFile(ctx.storage, p.input.key, (path) => inspectImage(path, { maxPixels: ctx.config.maxPixels, minSide: ctx.config.minImageSide, maxAspectRatio: ctx.config.maxAspectRatio, scale: p.options.scale, format: p.input.format, check: ctx.config.uploadCheck }));
  const format = resolveFormat(p.options.format, p.input.format);
  return {
    id: p.id,
    engine: p.engine,
    options: { ...p.options, format },
    input: { ...p.input, ...dims },
    outputKey: outputKey(p.id, FORMAT_EXTENSIONS[format]),
    createdAt: Date.now(),
  };
}

/** Refuse a body declared larger than `limit` (+ multipart framing) before reading any of it. */
export function assertDeclaredLength(req: FastifyRequest, limit: number, code: 'IMAGE_TOO_LARGE' | 'BATCH_TOO_LARGE' = 'IMAGE_TOO_LARGE'): void {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > limit + MULTIPART_SLACK) {
    throw new ApiError(code, `The request declares ${declared} bytes, over the ${code === 'IMAGE_TOO_LARGE' ? 'upload' : 'batch'} limit of ${limit} bytes`, {
      extensions: { limitBytes: limit },
      headers: { connection: 'close' },
    });
  }
}

export interface AcceptOptions {
  /** Multipart file part name. Default `image`. */
  fileField?: string;
  /** Turn received fields (and the query) into native option fields (compat routes). */
  mapFields?: (fields: Record<string, string>) => Record<string, string>;
  /** Set by routes that accept webhooks and Idempotency-Key (the native API). Default true. */
  native?: boolean;
  /** Extra check of the client's file name (compat: the extension list); throws to refuse. */
  checkName?: (name: string) => void;
}

export interface AcceptResult {
  accepted: JobAccepted;
  /** The answer replays an earlier submission with the same Idempotency-Key. */
  replayed: boolean;
  /** The client's file name. */
  name: string;
}

/**
 * Accept one job: admission (503 when the queue is full or workers hold), stream the upload to storage (hashing it
 * for Idempotency-Key), validate it and its options, enqueue. Returns the 202 body.
 */
/**
 * The options part of a submission, the same for a job and a batch: the webhook (native routes only) taken out of
 * the fields, compat fields mapped, options parsed, the engine known.
 */
export async function submissionOptions(
  ctx: GatewayContext,
  fields: Record<string, string>,
  o: { native: boolean; mapFields?: (fields: Record<string, string>) => Record<string, string> },
): Promise<{ webhook: Awaited<ReturnType<typeof takeWebhook>> | undefined; engine: string; options: ParsedOptions; warning?: string }> {
  const { config } = ctx;
  const webhook = o.native ? await takeWebhook(fields, { secret: config.webhookSecret, allowPrivate: config.webhookAllowPrivate }) : undefined;
  const { engine: requested, options } = parseJobOptions(o.mapFields ? o.mapFields(fields) : fields);
  const engine = requested ?? config.defaultEngine;
  await ctx.engines.assertKnown(engine);
  // A worker usually comes back within seconds (restart, deploy): ask again after the shortest configured delay, at least 5 s.
  const warning = await ctx.engines.checkOffered(engine, { acceptWithoutWorker: config.acceptWithoutWorker, retryAfterSeconds: Math.min(config.retryAfterMaxSeconds, Math.max(5, config.retryAfterMinSeconds)) });
  return { webhook, engine, options, ...(warning ? { warning } : {}) };
}

export async function acceptJob(ctx: GatewayContext, req: FastifyRequest, opts: AcceptOptions = {}): Promise<AcceptResult> {
  const { config, storage, jobs } = ctx;
  const native = opts.native !== false;
  if (!ctx.redisReady()) throw redisUnavailable();
  assertDeclaredLength(req, config.maxUploadBytes);
  await ctx.admission.assertAccepting();
  const idemKey = native ? idempotencyKeyOf(req) : undefined;
  const owner = ownerOf(req, config.apiKeys);
  const id = newJobId();
  let claim: ClaimedKey | undefined;
  try {
    const fingerprint = idemKey ? new Fingerprint() : undefined;
    const received = await receiveUpload(req, { id, storage, maxUploadBytes: config.maxUploadBytes, fileField: opts.fileField ?? 'image', stallMs: config.multipartStallTimeoutMs, ...(fingerprint ? { fingerprint } : {}) });
    let fields = received.fields;
    const { input } = received;
    opts.checkName?.(input.name);
    if (idemKey && fingerprint) {
      const got = await ctx.idempotency.claim(clientIdentity(req, config.apiKeys).id, idemKey, fingerprint.digest('job', fields), 'job', id);
      if ('replay' in got) {
        const prior = got.replay;
        await storage.removeJob(id).catch(() => undefined);
        return { accepted: { id: prior.id, status: 'queued', createdAt: new Date(prior.createdAt).toISOString(), links: jobLinks(prior.id, config.publicUrl ?? '') }, replayed: true, name: input.name };
      }
      claim = got;
    }
    const { webhook, engine, options, warning } = await submissionOptions(ctx, fields, { native, ...(opts.mapFields ? { mapFields: opts.mapFields } : {}) });
    const data = await prepareJob(ctx, { id, input, engine, options });
    // Again just before queueing: requests that were admitted together while uploading must not overshoot the bound.
    await ctx.admission.assertAccepting();
    await jobs.enqueue(data, { ...(owner ? { owner } : {}), ...(webhook ? { webhook: JSON.stringify(webhook) } : {}) });
    ctx.admission.noteQueued();
    await claim?.complete();
    return { accepted: { id, status: 'queued', createdAt: new Date(data.createdAt).toISOString(), links: jobLinks(id, config.publicUrl ?? ''), ...(warning ? { warning } : {}) }, replayed: false, name: input.name };
  } catch (err) {
    await storage.removeJob(id).catch(() => undefined);
    await claim?.release();
    throw err;
  }
}

export function jobRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  app.post('/v1/jobs', async (req, reply) => {
    const { accepted, replayed } = await acceptJob(ctx, req);
    if (replayed) reply.header('idempotent-replayed', 'true');
    return reply.code(202).header('location', accepted.links.self).send(accepted);
  });

  app.get<{ Params: { id: string } }>('/v1/jobs/:id', async (req) => {
    checkId(req.params.id);
    return (await ctx.jobs.find(req.params.id)).view;
  });

  app.get<{ Params: { id: string } }>('/v1/jobs/:id/result', async (req, reply) => {
    checkId(req.params.id);
    const { view, job } = await ctx.jobs.find(req.params.id);
    if (view.status !== 'completed' || !job?.returnvalue) {
      throw new ApiError('JOB_NOT_COMPLETED', `Job ${view.id} is ${view.status}, not completed`, { extensions: { jobStatus: view.status, ...(view.error ? { error: view.error } : {}) } });
    }
    const result = job.returnvalue;
    // Streamed from storage with Content-Length, ETag and Range, or a 302 to a presigned URL (RESULT_REDIRECT).
    const sent = await sendStored(ctx.storage, req, reply, result.key, {
      contentType: FORMAT_CONTENT_TYPES[result.format],
      contentDisposition: contentDisposition(downloadName(view.input.name, FORMAT_EXTENSIONS[result.format])),
      cacheControl: 'private, max-age=3600',
      ...(ctx.config.resultRedirect === 'presigned' ? { redirect: { expiresInSeconds: ctx.config.presignExpiresSeconds } } : {}),
    });
    if (!sent) throw new ApiError('JOB_EXPIRED', `The result of job ${view.id} is no longer stored`);
    return sent;
  });

  app.delete<{ Params: { id: string } }>('/v1/jobs/:id', async (req) => {
    checkId(req.params.id);
    return ctx.jobs.cancel(req.params.id);
  });

  app.get<{ Params: { id: string } }>('/v1/jobs/:id/events', async (req, reply) => {
    checkId(req.params.id);
    const first = await ctx.jobs.find(req.params.id);
    await streamJobEvents(ctx, req, reply, first.view);
    return reply;
  });
}

const FINAL = new Set(['completed', 'failed', 'canceled']);

/** A valid Last-Event-ID header (a BullMQ event stream id), or undefined. */
export function lastEventIdOf(req: FastifyRequest): string | undefined {
  const raw = req.headers['last-event-id'];
  const v = (Array.isArray(raw) ? raw[0] : raw)?.trim();
  return v && EVENT_ID_PATTERN.test(v) ? v : undefined;
}

/**
 * Server-sent events: the current view, then one event per change, closed after a final status.
 * Event ids are the ids of the engine queue's BullMQ event stream, the same on every gateway: a client that
 * reconnects with Last-Event-ID gets the current view only if something happened to the job since (else nothing until
 * the next change), then live events.
 */
async function streamJobEvents(ctx: GatewayContext, req: FastifyRequest, reply: FastifyReply, initial: JobView): Promise<void> {
  const resumeFrom = lastEventIdOf(req);
  const engine = initial.engine;
  let closed = false;
  let lastSent = '0-0';
  const buffered: JobEvent[] = [];
  let live = false;
  const res = reply.raw;
  const send = (event: string, data: unknown, id?: string): void => {
    if (closed) return;
    if (id && compareEventIds(id, lastSent) > 0) lastSent = id;
    res.write(`${id ? `id: ${id}\n` : ''}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  };
  const finish = (): void => {
    if (closed) return;
    closed = true;
    unsubscribe();
    clearInterval(ping);
    res.end();
  };
  const onEvent = (e: JobEvent): void => {
    if (!live) {
      buffered.push(e);
      return;
    }
    if (e.eventId && compareEventIds(e.eventId, lastSent) <= 0) return;
    if (e.type === 'progress') {
      send('progress', { id: initial.id, progress: Math.max(0, Math.min(1, e.progress)) }, e.eventId);
      return;
    }
    // Any state change: send the full view, which is the truth (attempts, errors, result).
    ctx.jobs.find(initial.id).then(({ view }) => {
      send('status', view, e.eventId);
      if (FINAL.has(view.status)) finish();
    }, () => finish());
  };
  // Subscribe before reading the position, so nothing falls between the snapshot and the live stream.
  const unsubscribe = ctx.events.subscribe(engine, initial.id, onEvent);
  const ping = setInterval(() => res.write(': ping\n\n'), 15_000);
  req.raw.on('close', finish);
  reply.hijack();
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
  try {
    const position = await ctx.events.lastId(ctx.redis, engine);
    const { view } = await ctx.jobs.find(initial.id);
    let changed = true;
    if (resumeFrom) {
      const missed = (await ctx.events.since(ctx.redis, engine, resumeFrom)).filter((e) => e.jobId === initial.id);
      changed = missed.length > 0 || view.status === 'canceled' || FINAL.has(view.status);
    }
    if (changed) send('status', view, position);
    else lastSent = position;
    if (FINAL.has(view.status)) return finish();
    live = true;
    for (const e of buffered.splice(0)) onEvent(e);
  } catch {
    finish();
  }
}
