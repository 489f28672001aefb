import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { ApiError, FORMAT_CONTENT_TYPES, FORMAT_EXTENSIONS, JOB_ID_PATTERN, type JobView } from '@photoenhance/contracts';
import type { JobEvent } from '../job-events.js';
import { SseStream, lastEventIdOf } from '../sse.js';
import { contentDisposition, downloadName, sendStored } from '../stored-files.js';

function checkId(id: string): void {
  if (!JOB_ID_PATTERN.test(id)) throw new ApiError('JOB_NOT_FOUND', `No job with id ${JSON.stringify(id.slice(0, 80))}`);
}

/** POST /v1/jobs, GET /v1/jobs/:id, GET …/result, GET …/events, DELETE /v1/jobs/:id. */
export const jobRoutes: FastifyPluginAsync = async (app) => {
  app.post('/v1/jobs', async (req, reply) => {
    const { accepted, replayed } = await app.intake.acceptJob(req);
    if (replayed) reply.header('idempotent-replayed', 'true');
    return reply.code(202).header('location', accepted.links.self).send(accepted);
  });

  app.get<{ Params: { id: string } }>('/v1/jobs/:id', async (req) => {
    checkId(req.params.id);
    return (await app.jobs.find(req.params.id)).view;
  });

  app.get<{ Params: { id: string } }>('/v1/jobs/:id/result', async (req, reply) => {
    checkId(req.params.id);
    const { view, job } = await app.jobs.find(req.params.id);
    if (view.status !== 'completed' || !job?.returnvalue) {
      throw new ApiError('JOB_NOT_COMPLETED', `Job ${view.id} is ${view.status}, not completed`, {
        extensions: { jobStatus: view.status, ...(view.error ? { error: view.error } : {}) },
      });
    }
    const result = job.returnvalue;
    // Streamed from storage with Content-Length, ETag and Range, or a 302 to a presigned URL (RESULT_REDIRECT).
    const sent = await sendStored(app.storage, req, reply, result.key, {
      contentType: FORMAT_CONTENT_TYPES[result.format],
      contentDisposition: contentDisposition(downloadName(view.input.name, FORMAT_EXTENSIONS[result.format])),
      cacheControl: 'private, max-age=3600',
      ...(app.config.resultRedirect === 'presigned' ? { redirect: { expiresInSeconds: app.config.presignExpiresSeconds } } : {}),
    });
    if (!sent) throw new ApiError('JOB_EXPIRED', `The result of job ${view.id} is no longer stored`);
    return sent;
  });

  app.delete<{ Params: { id: string } }>('/v1/jobs/:id', async (req) => {
    checkId(req.params.id);
    return app.jobs.cancel(req.params.id);
  });

  app.get<{ Params: { id: string } }>('/v1/jobs/:id/events', async (req, reply) => {
    checkId(req.params.id);
    const first = await app.jobs.find(req.params.id);
    await streamJobEvents(app, req, reply, first.view);
    return reply;
  });
};

const FINAL = new Set(['completed', 'failed', 'canceled']);

/**
 * Server-sent events: the current view, then one event per change, closed after a final status.
 * Event ids are the ids of the engine queue's BullMQ event stream, the same on every gateway: a client that
 * reconnects with Last-Event-ID gets the current view only if something happened to the job since (else nothing until
 * the next change), then live events.
 */
async function streamJobEvents(app: FastifyInstance, req: FastifyRequest, reply: FastifyReply, initial: JobView): Promise<void> {
  const resumeFrom = lastEventIdOf(req);
  const engine = initial.engine;
  const buffered: JobEvent[] = [];
  let live = false;
  const onEvent = (e: JobEvent): void => {
    if (!live) {
      buffered.push(e);
      return;
    }
    if (stream.isStale(e.eventId)) return;
    if (e.type === 'progress') {
      stream.send('progress', { id: initial.id, progress: Math.max(0, Math.min(1, e.progress)) }, e.eventId);
      return;
    }
    // Any state change: send the full view, which is the truth (attempts, errors, result).
    app.jobs.find(initial.id).then(
      ({ view }) => {
        stream.send('status', view, e.eventId);
        if (FINAL.has(view.status)) stream.close();
      },
      () => stream.close(),
    );
  };
  // Subscribe before reading the position, so nothing falls between the snapshot and the live stream.
  const unsubscribe = app.jobEvents.subscribe(engine, initial.id, onEvent);
  const stream = new SseStream(req, reply, { onClose: unsubscribe });
  try {
    const position = await app.jobEvents.lastId(app.redis, engine);
    const { view } = await app.jobs.find(initial.id);
    let changed = true;
    if (resumeFrom) {
      const missed = (await app.jobEvents.since(app.redis, engine, resumeFrom)).filter((e) => e.jobId === initial.id);
      changed = missed.length > 0 || view.status === 'canceled' || FINAL.has(view.status);
    }
    if (changed) stream.send('status', view, position);
    else stream.seen(position);
    if (FINAL.has(view.status)) return stream.close();
    live = true;
    for (const e of buffered.splice(0)) onEvent(e);
  } catch {
    stream.close();
  }
}
