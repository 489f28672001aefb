import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
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
} from '@photoenhance/contracts';
import { LocalStorage } from '@photoenhance/storage';
import type { GatewayContext } from '../context.js';
import { inspectImage, receiveUpload } from '../upload.js';
import { newJobId } from '../job-service.js';
import { redisUnavailable } from '../problems.js';
import type { JobEvent } from '../job-events.js';

/** Multipart framing around the file part; a Content-Length above limit + this is refused before reading. */
const MULTIPART_SLACK = 1024 * 1024;

function checkId(id: string): void {
  if (!JOB_ID_PATTERN.test(id)) throw new ApiError('JOB_NOT_FOUND', `No job with id ${JSON.stringify(id.slice(0, 80))}`);
}

function downloadName(inputName: string, ext: string): string {
  const stem = inputName.replace(/\.[^.]*$/, '') || 'photo';
  return `${stem}_enhanced.${ext}`;
}

function contentDisposition(name: string): string {
  const ascii = name.replace(/[^\x20-\x7e]/g, '_').replace(/["\\]/g, '_');
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(name)}`;
}

/** Accept one job: stream the upload to storage, validate it and its options, enqueue. Returns the 202 body. */
export async function acceptJob(ctx: GatewayContext, req: FastifyRequest, fileField = 'image'): Promise<JobAccepted> {
  const { config, storage, jobs, engines } = ctx;
  if (!ctx.redisReady()) throw redisUnavailable();
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > config.maxUploadBytes + MULTIPART_SLACK) {
    throw new ApiError('IMAGE_TOO_LARGE', `The request declares ${declared} bytes, over the upload limit of ${config.maxUploadBytes} bytes`, {
      extensions: { limitBytes: config.maxUploadBytes },
      headers: { connection: 'close' },
    });
  }
  const id = newJobId();
  try {
    const { fields, input } = await receiveUpload(req, { id, storage, maxUploadBytes: config.maxUploadBytes, fileField });
    const { engine: requested, options } = parseJobOptions(fields);
    const engine = requested ?? config.defaultEngine;
    await engines.assertKnown(engine);
    const dims = await inspectImage(storage.path(input.key), { maxPixels: config.maxPixels, scale: options.scale, format: input.format });
    const format = resolveFormat(options.format, input.format);
    const createdAt = Date.now();
    const data: JobData = {
      id,
      engine,
      options: { ...options, format },
      input: { ...input, ...dims },
      outputKey: LocalStorage.outputKey(id, FORMAT_EXTENSIONS[format]),
      createdAt,
    };
    await jobs.enqueue(data);
    return { id, status: 'queued', createdAt: new Date(createdAt).toISOString(), links: jobLinks(id, config.publicUrl ?? '') };
  } catch (err) {
    await storage.removeJob(id).catch(() => undefined);
    throw err;
  }
}

export function jobRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  app.post('/v1/jobs', async (req, reply) => {
    const accepted = await acceptJob(ctx, req);
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
    const path = ctx.storage.path(result.key);
    const st = await stat(path).catch(() => undefined);
    if (!st) throw new ApiError('JOB_EXPIRED', `The result of job ${view.id} is no longer stored`);
    return reply
      .type(FORMAT_CONTENT_TYPES[result.format])
      .header('content-length', st.size)
      .header('content-disposition', contentDisposition(downloadName(view.input.name, FORMAT_EXTENSIONS[result.format])))
      .header('cache-control', 'private, max-age=3600')
      .send(createReadStream(path));
  });

  app.delete<{ Params: { id: string } }>('/v1/jobs/:id', async (req) => {
    checkId(req.params.id);
    return ctx.jobs.cancel(req.params.id);
  });

  app.get<{ Params: { id: string } }>('/v1/jobs/:id/events', async (req, reply) => {
    checkId(req.params.id);
    const first = await ctx.jobs.find(req.params.id);
    streamJobEvents(ctx, req, reply, first.view);
    return reply;
  });
}

const FINAL = new Set(['completed', 'failed', 'canceled']);

/** Server-sent events: the current view at once, then one event per change, closed after a final status. */
function streamJobEvents(ctx: GatewayContext, req: FastifyRequest, reply: FastifyReply, initial: JobView): void {
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
  let seq = 0;
  let closed = false;
  const send = (event: string, data: unknown): void => {
    if (closed) return;
    res.write(`id: ${++seq}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  };
  const finish = (): void => {
    if (closed) return;
    closed = true;
    unsubscribe();
    clearInterval(ping);
    res.end();
  };
  send('status', initial);
  if (FINAL.has(initial.status)) {
    closed = true;
    res.end();
    return;
  }
  const onEvent = (e: JobEvent): void => {
    if (e.type === 'progress') {
      send('progress', { id: initial.id, progress: e.progress });
      return;
    }
    // Any state change: send the full view, which is the truth (attempts, errors, result).
    ctx.jobs.find(initial.id).then(({ view }) => {
      send('status', view);
      if (FINAL.has(view.status)) finish();
    }, () => finish());
  };
  const unsubscribe = ctx.events.subscribe(initial.engine, initial.id, onEvent);
  // The job may have moved between the first read and the subscription: look once more.
  onEvent({ type: 'waiting', jobId: initial.id });
  const ping = setInterval(() => res.write(': ping\n\n'), 15_000);
  req.raw.on('close', finish);
}
