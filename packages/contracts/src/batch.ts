import type { JobError } from './errors.js';
import type { JobLinks, JobStatus, JobView } from './job.js';
import type { JobOptions } from './options.js';

/**
 * Batches: many jobs submitted together (POST /v1/batches), tracked as one. Items are ordinary jobs in the same queue.
 * A batch is `queued` until an item starts, `running` while any item is queued or active, then final.
 */
export const BATCH_STATUSES = ['queued', 'running', 'completed', 'partial', 'failed', 'canceled'] as const;
export type BatchStatus = (typeof BATCH_STATUSES)[number];
/** Final states: completed (every item completed), partial (some completed, some failed or canceled), failed (none completed), canceled (DELETE /v1/batches/:id stopped items). */
export const FINAL_BATCH_STATUSES: readonly BatchStatus[] = ['completed', 'partial', 'failed', 'canceled'];

/** Batch ids: URL-safe, unguessable, fixed shape. */
export const BATCH_ID_PATTERN = /^b_[0-9a-z]{20}$/;

export interface BatchLinks {
  self: string;
  /** Streamed ZIP of the results finished so far (available while the batch runs). */
  results: string;
  /** Server-sent events: `status` (summary), `item` (one item changed), with Last-Event-ID resume. */
  events: string;
}

export function batchLinks(id: string, base = ''): BatchLinks {
  return { self: `${base}/v1/batches/${id}`, results: `${base}/v1/batches/${id}/results.zip`, events: `${base}/v1/batches/${id}/events` };
}

/** 202 answer of POST /v1/batches. `rejected` items were recorded as failed at submission (bad item, not a bad batch). */
export interface BatchAccepted {
  id: string;
  status: BatchStatus;
  total: number;
  accepted: number;
  rejected: number;
  createdAt: string;
  links: BatchLinks;
  /** Set when accepted although no live worker offers the engine (ACCEPT_WITHOUT_WORKER=true): the jobs wait for one. */
  warning?: string;
}

export type BatchCounts = Record<JobStatus, number>;

/** One item of a batch. Items refused at submission have no jobId and status `failed` with the refusal's code. */
export interface BatchItemView {
  index: number;
  /** The client's file name (multipart filename or archive entry name), for display only; never a path. */
  name: string;
  /** Unique name of the result inside results.zip (`<stem>_enhanced.<ext>`, numbered when names repeat). */
  resultName: string;
  jobId?: string;
  status: JobStatus;
  progress: number;
  error?: JobError;
  links?: JobLinks;
}

/** GET /v1/batches/:id */
export interface BatchView {
  id: string;
  status: BatchStatus;
  total: number;
  counts: BatchCounts;
  /** 0..1: finished items plus the progress of running ones, over total. */
  progress: number;
  engine: string;
  options: Omit<JobOptions, 'format'> & { format: JobOptions['format'] | 'auto' };
  createdAt: string;
  /** When an item last finished (or the batch was created). */
  updatedAt: string;
  finishedAt?: string;
  canceledAt?: string;
  webhook?: { url: string; events: WebhookEvent[] };
  items: BatchItemView[];
  links: BatchLinks;
}

/** A BatchView without its items (SSE `status` events, webhook payloads of batch progress). */
export type BatchSummary = Omit<BatchView, 'items'>;

/** Webhooks: `webhook` (URL) and `webhookEvents` (comma list, default all) fields on POST /v1/jobs and /v1/batches. */
export const WEBHOOK_EVENTS = ['completed', 'failed', 'progress'] as const;
export type WebhookEvent = (typeof WEBHOOK_EVENTS)[number];

/**
 * Signature: hex HMAC-SHA256 with the gateway's WEBHOOK_SECRET over `${timestamp}.${rawBody}`, sent as `sha256=<hex>`.
 * Receivers should recompute it over the raw body and reject timestamps older than a few minutes (replays).
 */
export const WEBHOOK_HEADERS = {
  signature: 'x-photoenhance-signature',
  timestamp: 'x-photoenhance-timestamp',
  event: 'x-photoenhance-event',
  delivery: 'x-photoenhance-delivery',
} as const;

/**
 * The JSON body of a webhook delivery. `id` is stable across retries of one delivery (deduplicate on it).
 * Jobs: `completed`/`failed` when the job ends, `progress` as the engine reports it (at most one per percent).
 * Batches: `progress` each time an item finishes; `completed` when the batch ends completed or partial; `failed` when
 * it ends failed. Canceled jobs and batches send nothing.
 */
export interface WebhookPayload {
  id: string;
  event: WebhookEvent;
  subject: 'job' | 'batch';
  createdAt: string;
  job?: JobView;
  batch?: BatchSummary;
  /** For batch `progress`: the item that just finished. */
  item?: BatchItemView;
}
