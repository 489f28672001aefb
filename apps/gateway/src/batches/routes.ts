import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import yazl from 'yazl';
import { FINAL_BATCH_STATUSES, type BatchItemView, type BatchSummary } from '@photoenhance/contracts';
import type { GatewayContext } from '../context.js';
import { compareEventIds, type JobEvent } from '../job-events.js';
import { contentDisposition, lastEventIdOf } from '../routes/jobs.js';
import { acceptBatch } from './accept.js';
import { checkBatchId, type ItemState } from './batch-service.js';

/** POST /v1/batches, GET /v1/batches/:id, GET …/results.zip, GET …/events, DELETE /v1/batches/:id. */
export function batchRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  app.post('/v1/batches', async (req, reply) => {
    const { accepted, replayed } = await acceptBatch(ctx, req, { imageField: 'images', archiveField: 'archive' });
    if (replayed) reply.header('idempotent-replayed', 'true');
    return reply.code(202).header('location', accepted.links.self).send(accepted);
  });

  app.get<{ Params: { id: string } }>('/v1/batches/:id', async (req) => ctx.batches.view(req.params.id));

  app.delete<{ Params: { id: string } }>('/v1/batches/:id', async (req) => ctx.batches.cancel(req.params.id));

  app.get<{ Params: { id: string } }>('/v1/batches/:id/results.zip', async (req, reply) => {
    const { rec, items } = await ctx.batches.record(req.params.id);
    const states = await ctx.batches.itemStates(rec, items);
    return sendResultsZip(ctx, reply, states, `batch_${rec.id}_results.zip`);
  });

  app.get<{ Params: { id: string } }>('/v1/batches/:id/events', async (req, reply) => {
    checkBatchId(req.params.id);
    await ctx.batches.record(req.params.id);
    await streamBatchEvents(ctx, req, reply, req.params.id);
    return reply;
  });
}

/**
 * A ZIP of the completed results so far, streamed as it is written (yazl reads each file from storage when its turn
 * comes; nothing is built in memory). Photos are stored, not deflated: they are compressed already. Names are the
 * items' unique result names. A result deleted meanwhile (expired, canceled) is left out.
 */
export async function sendResultsZip(ctx: GatewayContext, reply: FastifyReply, states: ItemState[], downloadName: string, rename?: (s: ItemState) => string): Promise<FastifyReply> {
  const zip = new yazl.ZipFile();
  let n = 0;
  for (const s of states) {
    if (s.view.status !== 'completed' || !s.resultKey) continue;
    const key = s.resultKey;
    const st = await ctx.storage.stat(key);
    if (!st) continue;
    // Opened only when its turn comes: one storage read at a time, whatever the batch size.
    zip.addReadStreamLazy(rename ? rename(s) : s.view.resultName, { compress: false, mtime: st.lastModified, size: st.size }, (cb) => {
      ctx.storage.openRead(key).then(
        (obj) => (obj ? cb(null, obj.stream) : cb(new Error(`${key} vanished while zipping`), undefined as never)),
        (err: unknown) => cb(err as Error, undefined as never),
      );
    });
    n++;
  }
  zip.end();
  return reply
    .type('application/zip')
    .header('content-disposition', contentDisposition(downloadName))
    .header('x-results-count', String(n))
    .header('cache-control', 'no-store')
    .send(zip.outputStream);
}

const FINAL_ITEM = new Set(['completed', 'failed', 'canceled']);

/**
 * Batch SSE: `status` (the summary, without items) at once and whenever an item finishes; `item` each time an item
 * changes state or reports progress. Ids are the engine queue's event stream ids, as for jobs, so Last-Event-ID resume
 * sends the summary again only when something happened meanwhile. Closed once the batch is final.
 */
async function streamBatchEvents(ctx: GatewayContext, req: FastifyRequest, reply: FastifyReply, id: string): Promise<void> {
  const resumeFrom = lastEventIdOf(req);
  const { rec, items } = await ctx.batches.record(id);
  const indexOf = new Map<string, number>();
  items.forEach((it, i) => it.jobId && indexOf.set(it.jobId, i));
  const res = reply.raw;
  let closed = false;
  let live = false;
  let lastSent = '0-0';
  const buffered: JobEvent[] = [];
  const send = (event: string, data: unknown, eventId?: string): void => {
    if (closed) return;
    if (eventId && compareEventIds(eventId, lastSent) > 0) lastSent = eventId;
    res.write(`${eventId ? `id: ${eventId}\n` : ''}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  };
  const finish = (): void => {
    if (closed) return;
    closed = true;
    for (const u of unsubscribers) u();
    clearInterval(ping);
    res.end();
  };
  const summary = async (): Promise<{ summary: BatchSummary; items: BatchItemView[] }> => {
    const fresh = await ctx.batches.record(id);
    const states = await ctx.batches.itemStates(fresh.rec, fresh.items);
    return { summary: ctx.batches.summarize(fresh.rec, states), items: states.map((s) => s.view) };
  };
  const onEvent = (e: JobEvent): void => {
    if (!live) {
      buffered.push(e);
      return;
    }
    if (e.eventId && compareEventIds(e.eventId, lastSent) <= 0) return;
    const index = indexOf.get(e.jobId);
    if (index === undefined) return;
    if (e.type === 'progress') {
      send('item', { index, jobId: e.jobId, status: 'active', progress: Math.max(0, Math.min(1, e.progress)) }, e.eventId);
      return;
    }
    summary().then(({ summary: s, items: views }) => {
      const item = views[index];
      if (item) send('item', item, e.eventId);
      if (item && FINAL_ITEM.has(item.status)) send('status', s, e.eventId);
      if ((FINAL_BATCH_STATUSES as readonly string[]).includes(s.status)) finish();
    }, () => finish());
  };
  const unsubscribers = [...indexOf.keys()].map((jobId) => ctx.events.subscribe(rec.engine, jobId, onEvent));
  const ping = setInterval(() => res.write(': ping\n\n'), 15_000);
  req.raw.on('close', finish);
  reply.hijack();
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
  try {
    const position = await ctx.events.lastId(ctx.redis, rec.engine);
    const { summary: s } = await summary();
    const final = (FINAL_BATCH_STATUSES as readonly string[]).includes(s.status);
    let changed = true;
    if (resumeFrom && !final) changed = (await ctx.events.since(ctx.redis, rec.engine, resumeFrom)).some((e) => indexOf.has(e.jobId));
    if (changed) send('status', s, position);
    else lastSent = position;
    if (final) return finish();
    live = true;
    for (const e of buffered.splice(0)) onEvent(e);
  } catch {
    finish();
  }
}
