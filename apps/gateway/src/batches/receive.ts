import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { once } from 'node:events';
import { PassThrough, type Readable } from 'node:stream';
import type { FastifyRequest } from 'fastify';
import { ApiError, FORMAT_EXTENSIONS, sniffImageFormat, type StoredInput } from '@photoenhance/contracts';
import { UploadTooLargeError, inputKey, type Storage } from '@photoenhance/storage';
import { readHead, safeName, walkMultipart } from '../upload.js';
import { newJobId } from '../job-service.js';
import type { Fingerprint } from '../idempotency/index.js';
import { extractArchive, inspectArchive, looksLikeArchive, archiveRefused, type ArchiveLimits } from './archive.js';

/** One submitted photo. `error` set: refused at submission and recorded in the batch as failed with that code. */
export interface ReceivedItem {
  name: string;
  jobId: string;
  input?: StoredInput;
  error?: ApiError;
}

export interface BatchReceiveOptions {
  batchId: string;
  storage: Storage;
  /** Repeated file part with the photos (`images`; compat: `files`). */
  imageField: string;
  /** File part with one ZIP archive instead; absent where archives are not accepted. */
  archiveField?: string;
  maxItems: number;
  maxUploadBytes: number;
  maxBatchBytes: number;
  archive: Omit<ArchiveLimits, 'maxEntries'>;
  fingerprint?: Fingerprint;
  /** MULTIPART_STALL_TIMEOUT_MS */
  stallMs?: number;
  /** Filled as parts arrive, so the caller can delete what was stored when the request is refused half-way. */
  items: ReceivedItem[];
}

/**
 * Stream `source` into storage, hashing every byte. Over `limit`: either stop and throw (`stopWhenOver`, the request is
 * refused) or drop the file and keep reading to the end of the part, so the next parts of the body still arrive.
 */
async function writeCapped(
  path: string,
  source: Readable,
  o: { head: Buffer; limit: number; hash?: { update(b: Buffer): unknown }; stopWhenOver?: () => Error },
): Promise<{ bytes: number; over: boolean }> {
  await mkdir(dirname(path), { recursive: true });
  const out = createWriteStream(path);
  let bytes = 0;
  let over = false;
  const take = async (chunk: Buffer): Promise<void> => {
    bytes += chunk.length;
    o.hash?.update(chunk);
    if (over) return;
    if (bytes > o.limit) {
      over = true;
      out.destroy();
      if (o.stopWhenOver) throw o.stopWhenOver();
      return;
    }
    if (!out.write(chunk)) await once(out, 'drain');
  };
  try {
    if (o.head.length) await take(o.head);
    for await (const chunk of source) await take(chunk as Buffer);
    if (!over) {
      out.end();
      await once(out, 'close');
    }
  } catch (err) {
    out.destroy();
    await rm(path, { force: true });
    throw err;
  }
  if (over) await rm(path, { force: true });
  return { bytes, over };
}

/**
 * Stream one photo into storage, hashing every byte. Over `limit`: the stored copy is abandoned (nothing published)
 * while the rest of the part is still read, so the next parts of the body arrive. A storage failure stops at once.
 */
async function storeCapped(
  storage: Storage,
  key: string,
  source: Readable,
  o: { head: Buffer; limit: number; hash?: { update(b: Buffer): unknown } },
): Promise<{ bytes: number; over: boolean }> {
  const feed = new PassThrough();
  let bytes = 0;
  let over = false;
  let failed: unknown;
  const writing = storage.writeStream(key, feed, { limit: o.limit });
  const settled = writing.then(
    () => undefined,
    (err: unknown) => {
      failed = err;
    },
  );
  const take = async (chunk: Buffer): Promise<void> => {
    bytes += chunk.length;
    o.hash?.update(chunk);
    if (over) return;
    if (failed) throw failed;
    if (bytes > o.limit) {
      over = true;
      feed.destroy(new UploadTooLargeError(o.limit));
      return;
    }
    if (!feed.write(chunk)) await Promise.race([once(feed, 'drain'), settled]);
  };
  try {
    if (o.head.length) await take(o.head);
    for await (const chunk of source) await take(chunk as Buffer);
    if (!over) feed.end();
    await settled;
  } catch (err) {
    feed.destroy();
    await settled;
    throw err;
  }
  if (over) return { bytes, over };
  if (failed) throw failed;
  return { bytes, over };
}

async function drain(source: Readable, hash?: { update(b: Buffer): unknown }): Promise<void> {
  for await (const chunk of source) hash?.update(chunk as Buffer);
}

function tooLarge(what: string, limit: number, setting: string): ApiError {
  return new ApiError('BATCH_TOO_LARGE', `${what} over the limit of ${limit} (${setting})`, {
    extensions: { limit, setting },
    headers: { connection: 'close' },
  });
}

/** Store one photo stream as a job input, deciding its type from content. Sets `item.input` or `item.error`. */
async function storePhoto(
  item: ReceivedItem,
  source: Readable,
  o: BatchReceiveOptions,
  hash?: { update(b: Buffer): unknown },
  alreadyRead?: Buffer,
): Promise<number> {
  const head = alreadyRead ?? (await readHead(source));
  if (head.length === 0) {
    item.error = new ApiError('IMAGE_UNREADABLE', `The file ${JSON.stringify(item.name)} is empty`);
    await drain(source, hash);
    return 0;
  }
  const format = sniffImageFormat(head);
  if (!format) {
    hash?.update(head);
    await drain(source, hash);
    item.error = new ApiError(
      'UNSUPPORTED_MEDIA_TYPE',
      `The file ${JSON.stringify(item.name)} is not a JPEG, PNG, WebP, BMP or TIFF image by its content`,
    );
    return head.length;
  }
  const key = inputKey(item.jobId, FORMAT_EXTENSIONS[format]);
  const { bytes, over } = await storeCapped(o.storage, key, source, { head, limit: o.maxUploadBytes, ...(hash ? { hash } : {}) });
  if (over) {
    item.error = new ApiError(
      'IMAGE_TOO_LARGE',
      `The file ${JSON.stringify(item.name)} is larger than the upload limit of ${o.maxUploadBytes} bytes`,
      { extensions: { limitBytes: o.maxUploadBytes } },
    );
    await o.storage.removeJob(item.jobId);
  } else {
    item.input = { key, name: item.name, format, bytes, width: 0, height: 0 };
  }
  return bytes;
}

/**
 * Stream a batch submission: many `images` parts (each to its own job folder as it arrives), or one ZIP archive part
 * (stored, judged from its central directory, then extracted entry by entry). Never holds a photo in memory.
 * Request-level problems throw (the whole batch is refused); item-level problems are recorded on the item.
 */
export async function receiveBatch(
  req: FastifyRequest,
  o: BatchReceiveOptions,
): Promise<{ fields: Record<string, string>; source: 'multipart' | 'archive' }> {
  if (!req.isMultipart())
    throw new ApiError(
      'MULTIPART_REQUIRED',
      `Content-Type is ${JSON.stringify(req.headers['content-type'] ?? 'missing')}, not multipart/form-data`,
    );
  const fields: Record<string, string> = {};
  let archiveKey: string | undefined;
  // The archive is read by its central directory, so it needs a file: beside the jobs on a folder backend (same
  // disk as today), a temp folder for object storage. It is never published.
  let scratch: string | undefined;
  const archivePath = async (key: string): Promise<string> => {
    const own = o.storage.localPath(key);
    if (own) return own;
    scratch ??= await mkdtemp(join(tmpdir(), 'pe-archive-'));
    return join(scratch, 'archive.zip');
  };
  try {
    let total = 0;
    // throwFileSizeLimit off, so one oversized photo is recorded as a bad item instead of breaking the whole body.
    const limits = {
      throwFileSizeLimit: false,
      fileSize: o.maxBatchBytes + 1,
      files: o.maxItems + 2,
      fields: 40,
      fieldSize: 4096,
      parts: o.maxItems + 50,
    };
    await walkMultipart(
      req,
      limits,
      fields,
      o.maxUploadBytes,
      async (part) => {
        if (o.archiveField && part.fieldname === o.archiveField && !archiveKey && o.items.length === 0) {
          archiveKey = `${o.batchId}/archive.zip`;
          const head = await readHead(part);
          if (!looksLikeArchive(head) || head[0] !== 0x50) {
            await drain(part.file);
            throw archiveRefused('not-a-zip', `The "${o.archiveField}" part is not a ZIP archive`);
          }
          const hash = o.fingerprint?.file(`archive:${safeName(part.filename)}`);
          const { bytes } = await writeCapped(await archivePath(archiveKey), part.file, {
            head,
            limit: o.maxBatchBytes,
            ...(hash ? { hash } : {}),
            stopWhenOver: () => tooLarge('The archive is', o.maxBatchBytes, 'MAX_BATCH_BYTES'),
          });
          total += bytes;
          return;
        }
        if (part.fieldname !== o.imageField || archiveKey) {
          await drain(part.file);
          const what = o.archiveField
            ? `file parts named "${o.imageField}", or one part "${o.archiveField}" with a ZIP archive`
            : `file parts named "${o.imageField}"`;
          throw new ApiError('UNEXPECTED_FIELD', `Unexpected file part "${part.fieldname}"; send ${what}, not both`, {
            extensions: { field: part.fieldname },
          });
        }
        if (o.items.length >= o.maxItems) throw tooLarge('The batch has more photos than allowed: it is', o.maxItems, 'MAX_BATCH_ITEMS');
        const item: ReceivedItem = { name: safeName(part.filename), jobId: newJobId() };
        o.items.push(item);
        total += await storePhoto(item, part.file, o, o.fingerprint?.file(item.name));
        if (total > o.maxBatchBytes) throw tooLarge('The batch is larger than allowed: it is', o.maxBatchBytes, 'MAX_BATCH_BYTES');
      },
      o.stallMs,
    );
    if (!archiveKey) {
      if (o.items.length === 0) {
        throw new ApiError(
          'IMAGE_REQUIRED',
          `No photos in the request: send file parts named "${o.imageField}"${o.archiveField ? ` or one ZIP archive part "${o.archiveField}"` : ''}`,
        );
      }
      return { fields, source: 'multipart' };
    }
    const path = await archivePath(archiveKey);
    const entries = await inspectArchive(path, { ...o.archive, maxEntries: o.maxItems });
    if (entries.length === 0) throw new ApiError('IMAGE_REQUIRED', 'The archive holds no photos');
    await extractArchive(path, entries, async (info, stream) => {
      const item: ReceivedItem = { name: safeName(info.path), jobId: newJobId() };
      o.items.push(item);
      const head = await readHead(stream);
      if (looksLikeArchive(head))
        throw archiveRefused('nested-archive', `The archive entry ${JSON.stringify(info.path)} is itself an archive; send photos only`, {
          entry: info.path,
        });
      await storePhoto(item, stream, o, undefined, head);
    });
    await o.storage.removeJob(o.batchId);
    return { fields, source: 'archive' };
  } finally {
    if (scratch) await rm(scratch, { recursive: true, force: true });
  }
}
