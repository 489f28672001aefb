import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import yazl from 'yazl';
import { FINAL_BATCH_STATUSES, type BatchItemView, type BatchSummary } from '@photoenhance/contracts';
import type { Storage } from '@photoenhance/storage';
import type { JobEvent } from '../job-events.js';
import { SseStream, lastEventIdOf } from '../sse.js';
import { contentDisposition } from '../stored-files.js';
import { checkBatchId, type ItemState } from './batch-service.js';

/** POST /v1/batches, GET /v1/batches/:id, GET …/results.zip, GET …/events, DELETE /v1/batches/:id. */
export const batchRoutes: FastifyPluginAsync = async (app) => {
  app.post('/v1/batches', async (req, reply) => {
    const { accepted, replayed } = await app.intake.acceptBatch(req, { imageField: 'images', archiveField: 'archive' });
    if (replayed) reply.header('idempotent-replayed', 'true');
    return reply.code(202).header('location', accepted.links.self).send(accepted);
  });

  app.get<{ Params: { id: string } }>('/v1/batches/:id', async (req) => app.batches.view(req.params.id));

  app.delete<{ Params: { id: string } }>('/v1/batches/:id', async (req) => app.batches.cancel(req.params.id));

  app.get<{ Params: { id: string } }>('/v1/batches/:id/results.zip', async (req, reply) => {
    const { rec, items } = await app.batches.record(req.params.id);
    const states = await app.batches.itemStates(rec, items);
    return sendResultsZip(app.storage, reply, states, `batch_${rec.id}_results.zip`);
  });

  app.get<{ Params: { id: string } }>('/v1/batches/:id/events', async (req, reply) => {
    checkBatchId(req.params.id);
    await app.batches.record(req.params.id);
    await streamBatchEvents(app, req, reply, req.params.id);
    return reply;
  });
};

/**
 * A ZIP of the completed results so far, streamed as it is written (yazl reads each file from storage when its turn
 * comes; nothing is built in memory). Photos are stored, not deflated: they are compressed already. Names are the
 * items' unique result names. A result deleted meanwhile (expired, canceled) is left out.
 */
export async function sendResultsZip(
  storage: Storage,
  reply: FastifyReply,
  states: ItemState[],
  downloadName: string,
  rename?: (s: ItemState) => string,
): Promise<FastifyReply> {
  const zip = new yazl.ZipFile();
  let n = 0;
  for (const s of states) {
    if (s.view.status !== 'completed' || !s.resultKey) continue;
    const key = s.resultKey;
    const st = await storage.stat(key);
    if (!st) continue;
    // Opened only when its turn comes: one storage read at a time, whatever the batch size.
    zip.addReadStreamLazy(rename ? rename(s) : s.view.resultName, { compress: false, mtime: st.lastModified, size: st.size }, (cb) => {
      storage.openRead(key).then(
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
async function streamBatchEvents(app: FastifyInstance, req: FastifyRequest, reply: FastifyReply, id: string): Promise<void> {
  const resumeFrom = lastEventIdOf(req);
  const { rec, items } = await app.batches.record(id);
  const indexOf = new Map<string, number>();
  items.forEach((it, i) => {
    if (it.jobId) indexOf.set(it.jobId, i);
  });
  let live = false;
  const buffered: JobEvent[] = [];
  const finalSent = new Set<number>();
  const summary = async (): Promise<{ summary: BatchSummary; items: BatchItemView[] }> => {
    const fresh = await app.batches.record(id);
    const states = await app.batches.itemStates(fresh.rec, fresh.items);
    return { summary: app.batches.summarize(fresh.rec, states), items: states.map((s) => s.view) };
  };
  const onEvent = (e: JobEvent): void => {
    if (!live) {
      buffered.push(e);
      return;
    }
    if (stream.isStale(e.eventId)) return;
    const index = indexOf.get(e.jobId);
    if (index === undefined) return;
    if (e.type === 'progress') {
      stream.send('item', { index, jobId: e.jobId, status: 'active', progress: Math.max(0, Math.min(1, e.progress)) }, e.eventId);
      return;
    }
    summary().then(
      ({ summary: s, items: views }) => {
        const item = views[index];
        if (item && !FINAL_ITEM.has(item.status)) stream.send('item', item, e.eventId);
        // Every item that has ended and was not sent yet, each once: this one, and any whose own event is still being
        // looked up (these lookups overlap; the one that finds the batch final closes the stream, and an item sent only
        // by its own later lookup would be lost).
        let ended = false;
        views.forEach((v, i) => {
          if (!FINAL_ITEM.has(v.status) || finalSent.has(i)) return;
          finalSent.add(i);
          stream.send('item', v, e.eventId);
          ended = true;
        });
        const final = (FINAL_BATCH_STATUSES as readonly string[]).includes(s.status);
        if (ended || final) stream.send('status', s, e.eventId);
        if (final) stream.close();
      },
      () => stream.close(),
    );
  };
  const unsubscribers = [...indexOf.keys()].map((jobId) => app.jobEvents.subscribe(rec.engine, jobId, onEvent));
  const stream = new SseStream(req, reply, {
    onClose: () => {
      for (const u of unsubscribers) u();
    },
  });
  try {
    const position = await app.jobEvents.lastId(app.redis, rec.engine);
    const { summary: s, items: views } = await summary();
    const final = (FINAL_BATCH_STATUSES as readonly string[]).includes(s.status);
    let changed = true;
    if (resumeFrom && !final) changed = (await app.jobEvents.since(app.redis, rec.engine, resumeFrom)).some((e) => indexOf.has(e.jobId));
    // A new client first gets the items that ended before it connected (a fast worker can finish some, or all, between
    // the batch's 202 and this request), so following the stream alone sees every item end, then the summary.
    if (!resumeFrom) {
      views.forEach((v, i) => {
        if (!FINAL_ITEM.has(v.status)) return;
        finalSent.add(i);
        stream.send('item', v, position);
      });
    }
    if (changed) stream.send('status', s, position);
    else stream.seen(position);
    if (final) return stream.close();
    live = true;
    for (const e of buffered.splice(0)) onEvent(e);
  } catch {
    stream.close();
  }
}
