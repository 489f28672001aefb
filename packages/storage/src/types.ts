import type { Readable } from 'node:stream';

/** What a stored object is: enough for Content-Length, ETag and Last-Modified. */
export interface StoredObject {
  size: number;
  /** Quoted, as sent in an ETag header. */
  etag: string;
  lastModified: Date;
}

/** An inclusive byte range, already checked against the object's size. */
export interface ByteRange {
  start: number;
  end: number;
}

/** An open object: `size` is the whole object's size; `stream` yields `range` only when one was asked for. */
export interface ObjectRead extends StoredObject {
  stream: Readable;
  range?: ByteRange;
}

export interface WriteOptions {
  /** Abort with UploadTooLargeError as soon as more than this many bytes arrived (the rest is not read). */
  limit: number;
  /** Bytes already read from `source` (for sniffing); written first. */
  head?: Buffer;
  /** Fed every byte written (idempotency fingerprints). */
  hash?: { update(data: Buffer): unknown };
}

/**
 * Where job files live: `<jobId>/input.<ext>`, `<jobId>/output.<ext>`, thumbnails beside them. Keys are relative and
 * built only from ids we generate. Two implementations: LocalStorage (a folder, possibly a shared mount) and S3Storage
 * (S3-compatible object storage). Every write is atomic: readers see the whole object or none.
 */
export interface Storage {
  readonly kind: 'local' | 's3';
  /** Where, for logs and /readyz (a folder or s3://bucket/prefix; never a credential). */
  readonly location: string;
  /** Stream `source` into `key` without buffering it whole; published only once complete. Returns the byte count. */
  writeStream(key: string, source: Readable, opts: WriteOptions): Promise<number>;
  /**
   * Publish a finished local file as `key` (worker results, thumbnails): atomic, a reader never sees a partial file.
   * `move`: the caller gives the file up (a folder backend may rename it into place instead of copying).
   */
  putFile(key: string, file: string, opts?: { contentType?: string; move?: boolean }): Promise<StoredObject>;
  /** The object, or undefined when it does not exist. */
  stat(key: string): Promise<StoredObject | undefined>;
  /** Open for reading (a range already resolved against stat()); undefined when it does not exist. */
  openRead(key: string, opts?: { range?: ByteRange }): Promise<ObjectRead | undefined>;
  /** Copy the object to a local file (engines and sharp read files); false when it does not exist. */
  downloadTo(key: string, file: string): Promise<boolean>;
  /** The object's own file where the backend is a folder (no copy needed); undefined for object storage. */
  localPath(key: string): string | undefined;
  /** Delete every file of a job (or batch) id. Idempotent. */
  removeJob(id: string): Promise<void>;
  /** Job ids whose newest file is older than `maxAgeMs` (orphans the queue no longer knows). */
  staleJobs(maxAgeMs: number, now?: number): Promise<string[]>;
  /** Reachable, the bucket or folder exists, credentials accepted; throws StorageConfigError or StorageUnavailableError. */
  check(timeoutMs?: number): Promise<void>;
  /** Remove uploads left half-written by a process that died (start-up). Never touches a live process's upload. */
  cleanPartials(opts: { maxAgeMs: number; now?: number }): Promise<number>;
  /** A short-lived URL a client can GET the object from directly; undefined where the backend has none. */
  presign?(key: string, opts: { expiresInSeconds: number; contentDisposition?: string; contentType?: string }): Promise<string>;
  close(): void;
}

export class UploadTooLargeError extends Error {
  constructor(readonly limit: number) {
    super(`upload exceeds ${limit} bytes`);
    this.name = 'UploadTooLargeError';
  }
}

/**
 * The storage backend cannot be reached or answers with a server error right now. Callers turn it into a retryable
 * STORAGE_UNAVAILABLE (503 for requests, a retried attempt for jobs); nothing is lost.
 */
export class StorageUnavailableError extends Error {
  readonly code = 'STORAGE_UNAVAILABLE';
  /** The variable to check when this persists (S3_ENDPOINT for an unreachable server). */
  readonly setting: string | undefined;
  constructor(message: string, opts: { cause?: unknown; setting?: string } = {}) {
    super(message, { cause: opts.cause });
    this.name = 'StorageUnavailableError';
    this.setting = opts.setting;
  }
}

/** Storage is configured wrongly (bad URL, missing bucket, rejected credentials); `setting` names the variable to fix. */
export class StorageConfigError extends Error {
  constructor(
    readonly setting: string,
    message: string,
    opts: { cause?: unknown } = {},
  ) {
    super(message, { cause: opts.cause });
    this.name = 'StorageConfigError';
  }
}

export function isStorageUnavailable(err: unknown): err is StorageUnavailableError {
  return err instanceof StorageUnavailableError || (err as { code?: unknown } | null)?.code === 'STORAGE_UNAVAILABLE';
}

export function inputKey(id: string, ext: string): string {
  return `${id}/input.${ext}`;
}

export function outputKey(id: string, ext: string): string {
  return `${id}/output.${ext}`;
}
