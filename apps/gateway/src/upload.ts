import type { MultipartFile, Multipart } from '@fastify/multipart';
import type { FastifyRequest } from 'fastify';
import { open, readFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import sharp from 'sharp';
import { bmpDimensions, decodeBmp } from '@photoenhance/imaging';
import {
  ApiError,
  FORMAT_EXTENSIONS,
  sniffImageFormat,
  type InputFormat,
  type StoredInput,
} from '@photoenhance/contracts';
import { LocalStorage, UploadTooLargeError, type Storage } from '@photoenhance/storage';
import type { Fingerprint } from './idempotency/index.js';

export interface ReceivedUpload {
  fields: Record<string, string>;
  input: StoredInput;
}

const SNIFF_BYTES = 16;

/** Read the first bytes of a file stream without losing them. */
export async function readHead(source: MultipartFile | Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  const stream = 'file' in source && !(source instanceof Readable) ? source.file : (source as Readable);
  while (n < SNIFF_BYTES) {
    const chunk = (stream.read() as Buffer | null) ?? (await new Promise<Buffer | null>((resolve, reject) => {
      const onReadable = (): void => { cleanup(); resolve(stream.read() as Buffer | null); };
      const onEnd = (): void => { cleanup(); resolve(null); };
      const onError = (e: Error): void => { cleanup(); reject(e); };
      const cleanup = (): void => { stream.off('readable', onReadable); stream.off('end', onEnd); stream.off('error', onError); };
      if (stream.readableEnded) return resolve(null);
      stream.once('readable', onReadable);
      stream.once('end', onEnd);
      stream.once('error', onError);
    }));
    if (chunk === null) {
      if (stream.readableEnded || stream.destroyed) break;
      continue;
    }
    chunks.push(chunk);
    n += chunk.length;
  }
  return Buffer.concat(chunks);
}

/**
 * Stream a multipart submission: the single file part `image` goes straight to storage (never buffered whole),
 * its type is decided from magic bytes, its size is capped while streaming, and all other parts are string fields.
 */
export async function receiveUpload(
  req: FastifyRequest,
  opts: { id: string; storage: Storage; maxUploadBytes: number; fileField?: string; fingerprint?: Fingerprint },
): Promise<ReceivedUpload> {
  const fileField = opts.fileField ?? 'image';
  if (!req.isMultipart()) throw new ApiError('MULTIPART_REQUIRED', `Content-Type is ${JSON.stringify(req.headers['content-type'] ?? 'missing')}, not multipart/form-data`);
  const fields: Record<string, string> = {};
  let input: StoredInput | undefined;
  // busboy's own cap sits one byte above ours, so our counter decides and names the limit.
  await walkMultipart(req, { fileSize: opts.maxUploadBytes + 1, files: 1, fields: 32, fieldSize: 4096, parts: 40 }, fields, opts.maxUploadBytes, async (part) => {
    if (part.fieldname !== fileField || input) {
      part.file.resume();
      throw new ApiError('UNEXPECTED_FIELD', `Unexpected file part "${part.fieldname}"; send exactly one file part named "${fileField}"`, { extensions: { field: part.fieldname } });
    }
    const head = await readHead(part);
    if (head.length === 0) throw new ApiError('IMAGE_UNREADABLE', `The "${fileField}" part is empty`);
    const format = sniffImageFormat(head);
    if (!format) {
      part.file.resume();
      const claimed = part.mimetype ? ` (it claims ${part.mimetype})` : '';
      throw new ApiError('UNSUPPORTED_MEDIA_TYPE', `The uploaded file is not a JPEG, PNG, WebP, BMP or TIFF image by its content${claimed}`, { extensions: { claimedType: part.mimetype } });
    }
    const key = LocalStorage.inputKey(opts.id, FORMAT_EXTENSIONS[format]);
    const name = safeName(part.filename);
    const bytes = await opts.storage.writeStream(key, part.file, { limit: opts.maxUploadBytes, head, ...(opts.fingerprint ? { hash: opts.fingerprint.file(name) } : {}) });
    if (part.file.truncated) throw new UploadTooLargeError(opts.maxUploadBytes);
    input = { key, name, format, bytes, width: 0, height: 0 };
  });
  if (!input) throw new ApiError('IMAGE_REQUIRED', `No file part named "${fileField}" in the request`);
  return { fields, input };
}

/**
 * Walk a multipart body: text parts into `fields`, each file part to `onFile`. Iterated by hand, because leaving a
 * for-await would call return(), which drains the rest of the body first. Errors become problems; once the body is
 * known to be too large, no more of it is read (the answer goes out with Connection: close).
 */
export async function walkMultipart(
  req: FastifyRequest,
  limits: { fileSize: number; files: number; fields: number; fieldSize: number; parts: number; throwFileSizeLimit?: boolean },
  fields: Record<string, string>,
  maxUploadBytes: number,
  onFile: (part: MultipartFile) => Promise<void>,
): Promise<void> {
  let parts: AsyncIterableIterator<Multipart>;
  try {
    const { throwFileSizeLimit, ...rest } = limits;
    parts = req.parts({ limits: rest, ...(throwFileSizeLimit === undefined ? {} : { throwFileSizeLimit }) } as Parameters<FastifyRequest['parts']>[0]);
  } catch (err) {
    throw mapMultipartError(err, maxUploadBytes);
  }
  try {
    for (;;) {
      const next = await parts.next();
      if (next.done) return;
      const part = next.value;
      if (part.type === 'field') {
        if (typeof part.value !== 'string') throw new ApiError('INVALID_OPTION', `Field "${part.fieldname}" must be a plain text value`, { extensions: { field: part.fieldname } });
        fields[part.fieldname] = part.value;
      } else {
        await onFile(part);
      }
    }
  } catch (err) {
    const mapped = mapMultipartError(err, maxUploadBytes);
    if (mapped instanceof ApiError && (mapped.code === 'IMAGE_TOO_LARGE' || mapped.code === 'BATCH_TOO_LARGE')) {
      req.raw.unpipe();
      req.raw.pause();
    }
    throw mapped;
  }
}

export function mapMultipartError(err: unknown, limit: number): unknown {
  if (err instanceof ApiError) return err;
  if (err instanceof UploadTooLargeError || (err as { code?: string }).code === 'FST_REQ_FILE_TOO_LARGE') {
    return new ApiError('IMAGE_TOO_LARGE', `The upload is larger than the limit of ${limit} bytes (${(limit / 1048576).toFixed(1)} MiB)`, { extensions: { limitBytes: limit }, headers: { connection: 'close' } });
  }
  const code = (err as { code?: string }).code ?? '';
  if (code === 'FST_FILES_LIMIT' || code === 'FST_PARTS_LIMIT' || code === 'FST_FIELDS_LIMIT') {
    return new ApiError('UNEXPECTED_FIELD', 'Too many parts: send one file part "image" and the option fields');
  }
  if (code === 'FST_INVALID_MULTIPART_CONTENT_TYPE' || code === 'FST_NO_FORM_DATA') {
    return new ApiError('MULTIPART_REQUIRED', 'The body is not valid multipart/form-data');
  }
  if (/Unexpected end of form|Malformed part header|Multipart: Boundary not found/i.test((err as Error).message ?? '')) {
    return new ApiError('INVALID_REQUEST', `The multipart body is malformed (${(err as Error).message})`);
  }
  return err;
}

/** The client's file name, kept only for the download name; reduced to a harmless base name. */
export function safeName(name: string | undefined): string {
  const base = (name ?? '').split(/[\\/]/).pop() ?? '';
  // eslint-disable-next-line no-control-regex
  const cleaned = base.replace(/[\u0000-\u001f\u007f"<>|:*?]/g, '').trim().slice(0, 200);
  return cleaned || 'photo';
}

/**
 * Check dimensions from the header only (cheap even for a tiny file claiming 50000×50000), then decode once at
 * reduced size to catch truncated or corrupt data before the job is queued.
 */
export async function inspectImage(
  path: string,
  opts: { maxPixels: number; scale: number; format: InputFormat },
): Promise<{ width: number; height: number }> {
  const { width, height } = await headerDimensions(path, opts.format);
  const inPx = width * height;
  const outPx = inPx * opts.scale * opts.scale;
  if (inPx > opts.maxPixels || outPx > opts.maxPixels) {
    const which = inPx > opts.maxPixels ? `input ${width}×${height} (${(inPx / 1e6).toFixed(1)} MP)` : `output ${width * opts.scale}×${height * opts.scale} at scale ${opts.scale} (${(outPx / 1e6).toFixed(1)} MP)`;
    throw new ApiError('IMAGE_DIMENSIONS_TOO_LARGE', `The ${which} exceeds the limit of ${(opts.maxPixels / 1e6).toFixed(1)} megapixels`, {
      extensions: { width, height, scale: opts.scale, maxPixels: opts.maxPixels },
    });
  }
  try {
    if (opts.format === 'bmp') {
      // sharp's libvips reads no BMP: decode it with ours (bounded by the pixel check above).
      decodeBmp(await readFile(path));
    } else {
      // Shrink-on-load keeps this cheap for JPEG/WebP; any truncation or corruption fails here.
      await sharp(path, { failOn: 'error', limitInputPixels: opts.maxPixels }).resize(64, 64, { fit: 'inside' }).raw().toBuffer();
    }
  } catch (err) {
    throw new ApiError('IMAGE_UNREADABLE', `The ${opts.format.toUpperCase()} image is truncated or corrupt (${(err as Error).message.split('\n')[0]})`);
  }
  return { width, height };
}

/** Dimensions from the header only: cheap even for a tiny file that claims 50000×50000. */
async function headerDimensions(path: string, format: InputFormat): Promise<{ width: number; height: number }> {
  try {
    if (format === 'bmp') {
      const fh = await open(path, 'r');
      try {
        const head = Buffer.alloc(64);
        const { bytesRead } = await fh.read(head, 0, 64, 0);
        return bmpDimensions(head.subarray(0, bytesRead));
      } finally {
        await fh.close();
      }
    }
    const meta = await sharp(path, { limitInputPixels: false }).metadata();
    const width = meta.autoOrient?.width ?? meta.width;
    const height = meta.autoOrient?.height ?? meta.height;
    if (!width || !height) throw new Error('the header has no dimensions');
    return { width, height };
  } catch (err) {
    throw new ApiError('IMAGE_UNREADABLE', `The ${format.toUpperCase()} image cannot be read (${(err as Error).message.split('\n')[0]})`);
  }
}
