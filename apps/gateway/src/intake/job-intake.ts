import type { FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import {
  ApiError,
  FORMAT_EXTENSIONS,
  batchLinks,
  jobLinks,
  parseJobOptions,
  resolveFormat,
  type BatchAccepted,
  type JobAccepted,
  type JobData,
  type StoredInput,
} from '@photoenhance/contracts';
import { outputKey, withLocalFile, type Storage } from '@photoenhance/storage';
import type { GatewayConfig } from '../config.js';
import type { EngineDirectory } from '../engine-directory.js';
import type { JobService } from '../job-service.js';
import { newJobId } from '../job-service.js';
import type { QueueBound } from '../backpressure/queue-bound.js';
import type { BatchService } from '../batches/batch-service.js';
import { ResultNames, newBatchId, type BatchItemRecord } from '../batches/batch-service.js';
import { receiveBatch, type ReceivedItem } from '../batches/receive.js';
import { clientIdentity, ownerOf } from '../client-id.js';
import { Fingerprint, idempotencyKeyOf, type ClaimedKey, type IdempotencyStore } from '../idempotency/index.js';
import { redisUnavailable } from '../problems.js';
import { inspectImage, receiveUpload } from '../upload.js';
import { takeWebhook } from '../webhooks/url-guard.js';

/** Multipart framing around the file part; a Content-Length above limit + this is refused before reading. */
const MULTIPART_SLACK = 1024 * 1024;

/** Options as parsed from submission fields, before the output format is settled. */
export type ParsedOptions = ReturnType<typeof parseJobOptions>['options'];

/** Refuse a body declared larger than `limit` (+ multipart framing) before reading any of it. */
export function assertDeclaredLength(
  req: FastifyRequest,
  limit: number,
  code: 'IMAGE_TOO_LARGE' | 'BATCH_TOO_LARGE' = 'IMAGE_TOO_LARGE',
): void {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > limit + MULTIPART_SLACK) {
    throw new ApiError(
      code,
      `The request declares ${declared} bytes, over the ${code === 'IMAGE_TOO_LARGE' ? 'upload' : 'batch'} limit of ${limit} bytes`,
      {
        extensions: { limitBytes: limit },
        headers: { connection: 'close' },
      },
    );
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

export interface JobIntakeDeps {
  config: Readonly<GatewayConfig>;
  storage: Storage;
  jobs: JobService;
  engines: EngineDirectory;
  queueBound: QueueBound;
  idempotency: IdempotencyStore;
  batches: BatchService;
  redisReady: () => boolean;
  logger: Logger;
}

/**
 * Job intake: everything between "a submission arrived" and "its jobs are queued", for single jobs and batches, the
 * native API and the compat routes alike (routes only shape the answer). The queue bound (503 when the queue is full
 * or workers hold), the upload streamed to storage (hashed for Idempotency-Key), the image and options validated, the
 * job enqueued; on any refusal what was stored is removed again.
 */
export class JobIntake {
  constructor(private readonly deps: JobIntakeDeps) {}

  /** Accept one job and return its 202 body. */
  async acceptJob(req: FastifyRequest, opts: AcceptOptions = {}): Promise<AcceptResult> {
    const { config, storage, jobs, queueBound, idempotency } = this.deps;
    const native = opts.native !== false;
    if (!this.deps.redisReady()) throw redisUnavailable();
    assertDeclaredLength(req, config.maxUploadBytes);
    await queueBound.assertAccepting();
    const idemKey = native ? idempotencyKeyOf(req) : undefined;
    const owner = ownerOf(req, config.apiKeys);
    const id = newJobId();
    let claim: ClaimedKey | undefined;
    try {
      const fingerprint = idemKey ? new Fingerprint() : undefined;
      const received = await receiveUpload(req, {
        id,
        storage,
        maxUploadBytes: config.maxUploadBytes,
        fileField: opts.fileField ?? 'image',
        stallMs: config.multipartStallTimeoutMs,
        ...(fingerprint ? { fingerprint } : {}),
      });
      const { fields, input } = received;
      opts.checkName?.(input.name);
      if (idemKey && fingerprint) {
        const got = await idempotency.claim(clientIdentity(req, config.apiKeys).id, idemKey, fingerprint.digest('job', fields), 'job', id);
        if ('replay' in got) {
          const prior = got.replay;
          await storage.removeJob(id).catch(() => undefined);
          return {
            accepted: {
              id: prior.id,
              status: 'queued',
              createdAt: new Date(prior.createdAt).toISOString(),
              links: jobLinks(prior.id, config.publicUrl ?? ''),
            },
            replayed: true,
            name: input.name,
          };
        }
        claim = got;
      }
      const { webhook, engine, options, warning } = await this.submissionOptions(fields, {
        native,
        ...(opts.mapFields ? { mapFields: opts.mapFields } : {}),
      });
      const data = await this.prepare({ id, input, engine, options });
      // Again just before queueing, holding a place: requests that passed the bound together while uploading must not
      // overshoot it.
      const place = await queueBound.reserve();
      try {
        await jobs.enqueue(data, { ...(owner ? { owner } : {}), ...(webhook ? { webhook: JSON.stringify(webhook) } : {}) });
        place.commit();
      } finally {
        place.release();
      }
      await claim?.complete();
      this.deps.logger.debug({ jobId: id, engine, native }, 'job accepted');
      return {
        accepted: {
          id,
          status: 'queued',
          createdAt: new Date(data.createdAt).toISOString(),
          links: jobLinks(id, config.publicUrl ?? ''),
          ...(warning ? { warning } : {}),
        },
        replayed: false,
        name: input.name,
      };
    } catch (err) {
      await storage.removeJob(id).catch(() => undefined);
      await claim?.release();
      throw err;
    }
  }

  /**
   * Accept a batch. Refused as a whole (nothing queued) for request-level problems: the queue bound (503), not
   * multipart, no photos, more than MAX_BATCH_ITEMS or MAX_BATCH_BYTES, a refused archive, bad shared options, unknown
   * engine, a refused webhook. A bad item (not an image, unreadable, over MAX_UPLOAD_BYTES or MAX_PIXELS) does not
   * refuse the batch: it is recorded as a failed item with its error code, and the others run.
   * The queue bound is checked when the request arrives; a batch let through is queued whole, so a batch may take the
   * queue past MAX_QUEUED_JOBS by up to its own size.
   */
  async acceptBatch(req: FastifyRequest, opts: AcceptBatchOptions = {}): Promise<AcceptBatchResult> {
    const { config, storage, jobs, queueBound, idempotency, batches } = this.deps;
    const native = opts.native !== false;
    if (!this.deps.redisReady()) throw redisUnavailable();
    assertDeclaredLength(req, config.maxBatchBytes, 'BATCH_TOO_LARGE');
    await queueBound.assertAccepting();
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
      const { fields, source } = await receiveBatch(req, {
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
      if (opts.checkName) for (const item of items) opts.checkName(item.name);
      if (idemKey && fingerprint) {
        const got = await idempotency.claim(
          clientIdentity(req, config.apiKeys).id,
          idemKey,
          fingerprint.digest('batch', fields),
          'batch',
          batchId,
        );
        if ('replay' in got) {
          await cleanup();
          const view = await batches.view(got.replay.id);
          const rejected = view.items.filter((i) => !i.jobId).length;
          return {
            accepted: {
              id: view.id,
              status: view.status,
              total: view.total,
              accepted: view.total - rejected,
              rejected,
              createdAt: view.createdAt,
              links: view.links,
            },
            replayed: true,
            jobIds: view.items.map((i) => i.jobId),
          };
        }
        claim = got;
      }
      const { webhook, engine, options, warning } = await this.submissionOptions(fields, {
        native,
        ...(opts.mapFields ? { mapFields: opts.mapFields } : {}),
      });

      // Validate every item like a single job; a bad one is recorded, not fatal.
      const names = new ResultNames();
      const ready: Array<JobData | undefined> = [];
      for (const item of items) {
        let data: JobData | undefined;
        if (item.input && !item.error) {
          try {
            data = await this.prepare({ id: item.jobId, input: item.input, engine, options });
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
      await batches.create(
        {
          id: batchId,
          engine,
          options,
          createdAt,
          total: items.length,
          source: opts.source ?? source,
          ...(owner ? { owner } : {}),
          ...(webhook ? { webhook } : {}),
        },
        records,
      );
      for (const data of ready) {
        if (data) {
          await jobs.enqueue(data, { batchId, ...(owner ? { owner } : {}) });
          queueBound.noteQueued();
        }
      }
      await claim?.complete();
      const accepted = ready.filter(Boolean).length;
      this.deps.logger.debug({ batchId, engine, native, accepted, total: items.length }, 'batch accepted');
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

  /**
   * The options part of a submission, the same for a job and a batch: the webhook (native routes only) taken out of
   * the fields, compat fields mapped, options parsed, the engine known.
   */
  private async submissionOptions(
    fields: Record<string, string>,
    o: { native: boolean; mapFields?: (fields: Record<string, string>) => Record<string, string> },
  ): Promise<{ webhook: Awaited<ReturnType<typeof takeWebhook>> | undefined; engine: string; options: ParsedOptions; warning?: string }> {
    const { config, engines } = this.deps;
    const webhook = o.native
      ? await takeWebhook(fields, { secret: config.webhookSecret, allowPrivate: config.webhookAllowPrivate })
      : undefined;
    const { engine: requested, options } = parseJobOptions(o.mapFields ? o.mapFields(fields) : fields);
    const engine = requested ?? config.defaultEngine;
    await engines.assertKnown(engine);
    // A worker usually comes back within seconds (restart, deploy): ask again after the shortest configured delay, at least 5 s.
    const warning = await engines.checkOffered(engine, {
      acceptWithoutWorker: config.acceptWithoutWorker,
      retryAfterSeconds: Math.min(config.retryAfterMaxSeconds, Math.max(5, config.retryAfterMinSeconds)),
    });
    return { webhook, engine, options, ...(warning ? { warning } : {}) };
  }

  /**
   * Validate a stored input against the options and build the job payload. The same for single jobs, batch items and
   * the compat routes, so every item gets the same checks.
   */
  private async prepare(p: { id: string; input: StoredInput; engine: string; options: ParsedOptions }): Promise<JobData> {
    const { config, storage } = this.deps;
    // Object storage: inspected from a temp copy (the header and a shrink-on-load decode need a file).
    const dims = await withLocalFile(storage, p.input.key, (path) =>
      inspectImage(path, {
        maxPixels: config.maxPixels,
        minSide: config.minImageSide,
        maxAspectRatio: config.maxAspectRatio,
        scale: p.options.scale,
        format: p.input.format,
        check: config.uploadCheck,
      }),
    );
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
}
