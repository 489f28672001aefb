import type { FastifyRequest } from 'fastify';
import {
  ApiError,
  FORMAT_EXTENSIONS,
  batchLinks,
  resolveFormat,
  type BatchAccepted,
  type JobData,
} from '@photoenhance/contracts';
import type { GatewayContext } from '../context.js';
import { clientIdentity, ownerOf } from '../client-id.js';
import { Fingerprint, idempotencyKeyOf, type ClaimedKey } from '../idempotency/index.js';
import { redisUnavailable } from '../problems.js';
import { assertDeclaredLength, prepareJob, submissionOptions } from '../routes/jobs.js';
import { ResultNames, newBatchId, type BatchItemRecord } from './batch-service.js';
import { receiveBatch, type ReceivedItem } from './receive.js';

export interface AcceptBatchOptions {
  imageField?: string;
  /** Accept one ZIP archive part under this name. */
  archiveField?: string;
  maxItems?: number;
  mapFields?: (fields: Record<string, string>) => Record<string, string>;
  /** Native API: Idempotency-Key and webhooks. Default true. */
  native?: boolean;
  source?: 'compat';
  /** Refuse the whole batch on the first bad item instead of recording it (compat: PhotoEnhanceAI refuses). */
  refuseBadItems?: boolean;
  /** Extra check of each client file name (compat: the extension list); throws to refuse the batch. */
  checkName?: (name: string) => void;
}

export interface AcceptBatchResult {
  accepted: BatchAccepted;
  replayed: boolean;
  /** Job ids of the items in order (refused items have none). */
  jobIds: Array<string | undefined>;
}

/**
 * Accept a batch. Refused as a whole (nothing queued) for request-level problems: admission (503), not multipart,
 * no photos, more than MAX_BATCH_ITEMS or MAX_BATCH_BYTES, a refused archive, bad shared options, unknown engine, a
 * refused webhook. A bad item (not an image, unreadable, over MAX_UPLOAD_BYTES or MAX_PIXELS) does not refuse the
 * batch: it is recorded as a failed item with its error code, and the others run.
 * The queue bound is checked when the request arrives; an admitted batch is queued whole, so a batch may take the
 * queue past MAX_QUEUED_JOBS by up to its own size.
 */
export async function acceptBatch(ctx: GatewayContext, req: FastifyRequest, opts: AcceptBatchOptions = {}): Promise<AcceptBatchResult> {
  const { config, storage, jobs } = ctx;
  const native = opts.native !== false;
  if (!ctx.redisReady()) throw redisUnavailable();
  assertDeclaredLength(req, config.maxBatchBytes, 'BATCH_TOO_LARGE');
  await ctx.admission.assertAccepting();
  const idemKey = native ? idempotencyKeyOf(req) : undefined;
  const owner = ownerOf(req, config.apiKeys);
  const batchId = newBatchId();
  const items: ReceivedItem[] = [];
  let claim: ClaimedKey | undefined;
  const cleanup = async (): Promise<void> => {
    await Promise.all(items.map((i) => storage.removeJob(i.jobId).catch(() => undefined)));
    await storage.removeJob(batchId).catch(() => undefined);
  };
  try {
    const fingerprint = idemKey ? new Fingerprint() : undefined;
    const { fields: received, source } = await receiveBatch(req, {
      batchId,
      storage,
      imageField: opts.imageField ?? 'images',
      ...(opts.archiveField ? { archiveField: opts.archiveField } : {}),
      maxItems: opts.maxItems ?? config.maxBatchItems,
      maxUploadBytes: config.maxUploadBytes,
      maxBatchBytes: config.maxBatchBytes,
      archive: { maxUncompressedBytes: config.maxArchiveUncompressedBytes, maxRatio: config.maxArchiveRatio },
      ...(fingerprint ? { fingerprint } : {}),
      stallMs: config.multipartStallTimeoutMs,
      items,
    });
    let fields = received;
    if (opts.checkName) for (const item of items) opts.checkName(item.name);
    if (idemKey && fingerprint) {
      const got = await ctx.idempotency.claim(clientIdentity(req, config.apiKeys).id, idemKey, fingerprint.digest('batch', fields), 'batch', batchId);
      if ('replay' in got) {
        await cleanup();
        const view = await ctx.batches.view(got.replay.id);
        const rejected = view.items.filter((i) => !i.jobId).length;
        return {
          accepted: { id: view.id, status: view.status, total: view.total, accepted: view.total - rejected, rejected, createdAt: view.createdAt, links: view.links },
          replayed: true,
          jobIds: view.items.map((i) => i.jobId),
        };
      }
      claim = got;
    }
    const { webhook, engine, options, warning } = await submissionOptions(ctx, fields, { native, ...(opts.mapFields ? { mapFields: opts.mapFields } : {}) });

    // Validate every item like a single job; a bad one is recorded, not fatal.
    const names = new ResultNames();
    const ready: Array<JobData | undefined> = [];
    for (const item of items) {
      let data: JobData | undefined;
      if (item.input && !item.error) {
        try {
          data = await prepareJob(ctx, { id: item.jobId, input: item.input, engine, options });
        } catch (err) {
          if (!(err instanceof ApiError)) throw err;
          item.error = err;
          await storage.removeJob(item.jobId).catch(() => undefined);
        }
      }
      ready.push(data);
    }
    if (opts.refuseBadItems) {
      const bad = items.find((i) => i.error);
      if (bad?.error) throw bad.error;
    }
    const createdAt = Date.now();
    const records: BatchItemRecord[] = items.map((item, i) => {
      const data = ready[i];
      const format = data?.options.format ?? resolveFormat(options.format, item.input?.format ?? 'png');
      const rec: BatchItemRecord = { name: item.name, resultName: names.next(item.name, FORMAT_EXTENSIONS[format]) };
      if (data) rec.jobId = item.jobId;
      else rec.error = { code: item.error?.code ?? 'IMAGE_UNREADABLE', message: item.error?.message ?? 'refused' };
      return rec;
    });
    // The batch record first, so item events always find their batch.
    await ctx.batches.create(
      { id: batchId, engine, options, createdAt, total: items.length, source: opts.source ?? source, ...(owner ? { owner } : {}), ...(webhook ? { webhook } : {}) },
      records,
    );
    for (const data of ready) {
      if (data) {
        await jobs.enqueue(data, { batchId, ...(owner ? { owner } : {}) });
        ctx.admission.noteQueued();
      }
    }
    await claim?.complete();
    const accepted = ready.filter(Boolean).length;
    return {
      accepted: {
        id: batchId,
        status: accepted === 0 ? 'failed' : 'queued',
        total: items.length,
        accepted,
        rejected: items.length - accepted,
        createdAt: new Date(createdAt).toISOString(),
        links: batchLinks(batchId, config.publicUrl ?? ''),
        ...(warning ? { warning } : {}),
      },
      replayed: false,
      jobIds: records.map((r) => r.jobId),
    };
  } catch (err) {
    await cleanup();
    await claim?.release();
    throw err;
  }
}
