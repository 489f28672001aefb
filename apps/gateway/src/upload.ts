import type { MultipartFile, Multipart } from '@fastify/multipart';
import type { FastifyRequest } from 'fastify';
import { open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import {
  BMP_HEADER_BYTES,
  StructureError,
  bmpDimensions,
  checkFileStructure,
  inspectBmp,
  type StructuralFormat,
} from '@photoenhance/imaging';
import { ApiError, FORMAT_EXTENSIONS, sniffImageFormat, type InputFormat, type StoredInput } from '@photoenhance/contracts';
import { LocalStorage, UploadTooLargeError, type Storage } from '@photoenhance/storage';
import type { Fingerprint } from './idempotency/index.js';
import { malformed, watchMultipart, type MultipartWatch } from './multipart-guard.js';

export interface ReceivedUpload {
  fields: Record<string, string>;
  input: StoredInput;
}

const SNIFF_BYTES = 16;

/**
 * sharp (libvips, about 9 MiB resident) is needed only for UPLOAD_CHECK=decode and the formats without a structural
 * check (TIFF): loaded on first use, so a gateway that never needs it stays small. Cached by the module system.
 */
export const loadSharp = async (): Promise<typeof import('sharp')> => (await import('sharp')).default;

/** Read the first bytes of a file stream without losing them. */
export async function readHead(source: MultipartFile | Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  const stream = 'file' in source && !(source instanceof Readable) ? source.file : (source as Readable);
  while (n < SNIFF_BYTES) {
    const chunk =
      (stream.read() as Buffer | null) ??
      (await new Promise<Buffer | null>((resolve, reject) => {
        const onReadable = (): void => {
          cleanup();
          resolve(stream.read() as Buffer | null);
        };
        const onEnd = (): void => {
          cleanup();
          resolve(null);
        };
        const onError = (e: Error): void => {
          cleanup();
          reject(e);
        };
        const cleanup = (): void => {
          stream.off('readable', onReadable);
          stream.off('end', onEnd);
          stream.off('error', onError);
        };
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
  opts: { id: string; storage: Storage; maxUploadBytes: number; fileField?: string; fingerprint?: Fingerprint; stallMs?: number },
): Promise<ReceivedUpload> {
  const fileField = opts.fileField ?? 'image';
  if (!req.isMultipart())
    throw new ApiError(
      'MULTIPART_REQUIRED',
      `Content-Type is ${JSON.stringify(req.headers['content-type'] ?? 'missing')}, not multipart/form-data`,
    );
  const fields: Record<string, string> = {};
  let input: StoredInput | undefined;
  // busboy's own cap sits one byte above ours, so our counter decides and names the limit.
  await walkMultipart(
    req,
    { fileSize: opts.maxUploadBytes + 1, files: 1, fields: 32, fieldSize: 4096, parts: 40 },
    fields,
    opts.maxUploadBytes,
    async (part) => {
      if (part.fieldname !== fileField || input) {
        part.file.resume();
        throw new ApiError(
          'UNEXPECTED_FIELD',
          `Unexpected file part "${part.fieldname}"; send exactly one file part named "${fileField}"`,
          { extensions: { field: part.fieldname } },
        );
      }
      const head = await readHead(part);
      if (head.length === 0) throw new ApiError('IMAGE_UNREADABLE', `The "${fileField}" part is empty`);
      const format = sniffImageFormat(head);
      if (!format) {
        part.file.resume();
        const claimed = part.mimetype ? ` (it claims ${part.mimetype})` : '';
        throw new ApiError(
          'UNSUPPORTED_MEDIA_TYPE',
          `The uploaded file is not a JPEG, PNG, WebP, BMP or TIFF image by its content${claimed}`,
          { extensions: { claimedType: part.mimetype } },
        );
      }
      const key = LocalStorage.inputKey(opts.id, FORMAT_EXTENSIONS[format]);
      const name = safeName(part.filename);
      const bytes = await opts.storage.writeStream(key, part.file, {
        limit: opts.maxUploadBytes,
        head,
        ...(opts.fingerprint ? { hash: opts.fingerprint.file(name) } : {}),
      });
      if (part.file.truncated) throw new UploadTooLargeError(opts.maxUploadBytes);
      input = { key, name, format, bytes, width: 0, height: 0 };
    },
    opts.stallMs,
  );
  if (!input) throw new ApiError('IMAGE_REQUIRED', `No file part named "${fileField}" in the request`);
  return { fields, input };
}

/** Default for walks whose caller passes no MULTIPART_STALL_TIMEOUT_MS. */
const DEFAULT_STALL_MS = 15_000;

/**
 * Walk a multipart body: text parts into `fields`, each file part to `onFile`. Iterated by hand, because leaving a
 * for-await would call return(), which drains the rest of the body first. Errors become problems; once the body is
 * known to be too large or malformed, no more of it is read here (the answer goes out with Connection: close and a
 * bounded drain). The parser is watched (multipart-guard.ts): a part it would drop or stall on, a body without its
 * closing boundary and a walk that stops moving all end as 400 MALFORMED_MULTIPART instead of a hang.
 */
export async function walkMultipart(
  req: FastifyRequest,
  limits: { fileSize: number; files: number; fields: number; fieldSize: number; parts: number; throwFileSizeLimit?: boolean },
  fields: Record<string, string>,
  maxUploadBytes: number,
  onFile: (part: MultipartFile) => Promise<void>,
  stallMs: number = DEFAULT_STALL_MS,
): Promise<void> {
  let parts: AsyncIterableIterator<Multipart>;
  try {
    const { throwFileSizeLimit, ...rest } = limits;
    parts = req.parts({ limits: rest, ...(throwFileSizeLimit === undefined ? {} : { throwFileSizeLimit }) } as Parameters<
      FastifyRequest['parts']
    >[0]);
  } catch (err) {
    throw mapMultipartError(err, maxUploadBytes);
  }
  let current: MultipartFile | undefined;
  let watch: MultipartWatch | undefined;
  // Each step races the watch; a step that loses is still observed so it cannot become an unhandled rejection.
  const step = <T>(p: Promise<T>): Promise<T> => {
    p.catch(() => undefined);
    return watch ? Promise.race([p, watch.failed]) : p;
  };
  try {
    for (;;) {
      const pending = parts.next();
      // The first next() pipes the body into the parser; only then may the watch listen to it.
      if (!watch && req.raw.readableFlowing !== null)
        watch = watchMultipart(req.raw, { stallMs, fileBytes: () => current?.file.bytesRead ?? 0 });
      const next = await step(pending);
      if (next.done) return;
      watch?.progress();
      const part = next.value;
      if (part.type === 'field') {
        if (typeof part.value !== 'string')
          throw new ApiError('INVALID_OPTION', `Field "${part.fieldname}" must be a plain text value`, {
            extensions: { field: part.fieldname },
          });
        if (part.valueTruncated)
          throw new ApiError('INVALID_OPTION', `Field "${part.fieldname.slice(0, 80)}" is longer than ${limits.fieldSize} bytes`, {
            extensions: { field: part.fieldname.slice(0, 200), limitBytes: limits.fieldSize },
          });
        fields[part.fieldname] = part.value;
      } else {
        current = part;
        await step(onFile(part));
        current = undefined;
      }
    }
  } catch (err) {
    const mapped = mapMultipartError(err, maxUploadBytes);
    if (mapped instanceof ApiError && mapped.headers.connection === 'close') {
      // Stop the parser and whoever reads the current file; the reply drains what is left (problems.ts).
      current?.file.destroy(mapped);
      req.raw.unpipe();
      req.raw.pause();
    }
    throw mapped;
  } finally {
    watch?.stop();
  }
}

/** busboy's and Dicer's words for a body that is not well-formed multipart. */
const MALFORMED_MESSAGES =
  /Unexpected end of (form|multipart data)|terminated early|Malformed part header|Boundary not found|Multipart: |Header size limit/i;

export function mapMultipartError(err: unknown, limit: number): unknown {
  if (err instanceof ApiError) return err;
  if (err instanceof UploadTooLargeError || (err as { code?: string }).code === 'FST_REQ_FILE_TOO_LARGE') {
    return new ApiError('IMAGE_TOO_LARGE', `The upload is larger than the limit of ${limit} bytes (${(limit / 1048576).toFixed(1)} MiB)`, {
      extensions: { limitBytes: limit },
      headers: { connection: 'close' },
    });
  }
  const code = (err as { code?: string }).code ?? '';
  if (code === 'FST_FILES_LIMIT' || code === 'FST_PARTS_LIMIT' || code === 'FST_FIELDS_LIMIT') {
    return new ApiError('UNEXPECTED_FIELD', 'Too many parts: send one file part "image" and the option fields', {
      headers: { connection: 'close' },
    });
  }
  if (code === 'FST_INVALID_MULTIPART_CONTENT_TYPE' || code === 'FST_NO_FORM_DATA') {
    return new ApiError('MULTIPART_REQUIRED', 'The body is not valid multipart/form-data');
  }
  if (code === 'FST_INVALID_JSON_FIELD_ERROR')
    return new ApiError('INVALID_OPTION', 'A field declared as application/json is not valid JSON; send option fields as plain text');
  if (code === 'FST_PROTO_VIOLATION') return malformed('A part is named after an Object prototype property (__proto__, constructor, ...)');
  if (code === 'FST_MP_PREMATURE_CLOSE') return malformed('The request was closed before the multipart body was complete');
  const message = (err as Error).message ?? '';
  if (MALFORMED_MESSAGES.test(message)) return malformed(`The multipart body is malformed (${message})`);
  return err;
}

/** The client's file name, kept only for the download name; reduced to a harmless base name. */
export function safeName(name: string | undefined): string {
  const base = (name ?? '').split(/[\\/]/).pop() ?? '';
  const cleaned = base
    // biome-ignore lint/suspicious/noControlCharactersInRegex: C0 controls and DEL are stripped on purpose (header injection, terminal escapes in a download name)
    .replace(/[\u0000-\u001f\u007f"<>|:*?]/g, '')
    .trim()
    .slice(0, 200);
  return cleaned || 'photo';
}

/** Defaults for callers that pass no MIN_IMAGE_SIDE / MAX_ASPECT_RATIO (the gateway config's defaults). */
export const IMAGE_SHAPE_DEFAULTS = { minSide: 4, maxAspectRatio: 32 };

/** How an upload is proven readable before it is queued (UPLOAD_CHECK): a structural walk, or a full decode. */
export type UploadCheck = 'structure' | 'decode';

const STRUCTURAL: ReadonlySet<InputFormat> = new Set<InputFormat>(['jpeg', 'png', 'webp', 'bmp']);

/**
 * Check dimensions from the header only (cheap even for a tiny file claiming 50000×50000): the pixel limit, the
 * smallest side and the aspect ratio every engine can process. Then prove the file readable without blocking the
 * event loop. `structure` (the default) walks the file's structure (packages/imaging checkFileStructure: JPEG markers
 * to EOI, PNG chunks and critical CRCs, WebP RIFF sizes, BMP headers), which refuses truncated and cut files at a
 * fraction of a decode's cost; TIFF, which has no walker, is decoded. `decode` decodes JPEG/PNG/WebP/TIFF at reduced
 * size in libvips' thread pool, which also catches corrupt compressed data inside an intact structure; BMP (which
 * libvips cannot read) is checked structurally either way, which for uncompressed pixels is as strict as decoding it.
 */
export async function inspectImage(
  path: string,
  opts: { maxPixels: number; scale: number; format: InputFormat; minSide?: number; maxAspectRatio?: number; check?: UploadCheck },
): Promise<{ width: number; height: number }> {
  const limits = (width: number, height: number): void => assertLimits(width, height, opts);
  if ((opts.check ?? 'structure') === 'structure' && STRUCTURAL.has(opts.format)) {
    try {
      // Limits are checked as soon as the header is read (a bomb is refused unread); orientation cannot change them.
      return await checkFileStructure(path, opts.format as StructuralFormat, { onHeader: (d) => limits(d.width, d.height) });
    } catch (err) {
      if (err instanceof StructureError)
        throw new ApiError('IMAGE_UNREADABLE', `The ${opts.format.toUpperCase()} image is truncated or corrupt (${err.message})`);
      throw err;
    }
  }
  const { width, height } = await headerDimensions(path, opts.format);
  limits(width, height);
  try {
    if (opts.format === 'bmp') {
      await withBmpHead(path, (head, size) => inspectBmp(head, size));
      return { width, height };
    }
    // Shrink-on-load keeps this cheap for JPEG/WebP; any truncation or corruption fails here.
    const sharp = await loadSharp();
    await sharp(path, { failOn: 'error', limitInputPixels: opts.maxPixels }).resize(64, 64, { fit: 'inside' }).raw().toBuffer();
  } catch (err) {
    if (err instanceof ApiError) throw err;
    throw new ApiError(
      'IMAGE_UNREADABLE',
      `The ${opts.format.toUpperCase()} image is truncated or corrupt (${(err as Error).message.split('\n')[0]})`,
    );
  }
  return { width, height };
}

/** The shape every engine can process, then the pixel limit on input and output. */
function assertLimits(
  width: number,
  height: number,
  opts: { maxPixels: number; scale: number; minSide?: number; maxAspectRatio?: number },
): void {
  assertShape(width, height, {
    minSide: opts.minSide ?? IMAGE_SHAPE_DEFAULTS.minSide,
    maxAspectRatio: opts.maxAspectRatio ?? IMAGE_SHAPE_DEFAULTS.maxAspectRatio,
  });
  const inPx = width * height;
  const outPx = inPx * opts.scale * opts.scale;
  if (inPx > opts.maxPixels || outPx > opts.maxPixels) {
    const which =
      inPx > opts.maxPixels
        ? `input ${width}×${height} (${(inPx / 1e6).toFixed(1)} MP)`
        : `output ${width * opts.scale}×${height * opts.scale} at scale ${opts.scale} (${(outPx / 1e6).toFixed(1)} MP)`;
    throw new ApiError('IMAGE_DIMENSIONS_TOO_LARGE', `The ${which} exceeds the limit of ${(opts.maxPixels / 1e6).toFixed(1)} megapixels`, {
      extensions: { width, height, scale: opts.scale, maxPixels: opts.maxPixels },
    });
  }
}

/** Refuse what no engine can process: a side under MIN_IMAGE_SIDE, or longer/shorter side over MAX_ASPECT_RATIO. */
export function assertShape(width: number, height: number, o: { minSide: number; maxAspectRatio: number }): void {
  const short = Math.min(width, height);
  const long = Math.max(width, height);
  if (short < o.minSide) {
    throw new ApiError(
      'IMAGE_DIMENSIONS_TOO_SMALL',
      `The image is ${width}×${height}; its shorter side must be at least ${o.minSide} pixels (MIN_IMAGE_SIDE)`,
      {
        extensions: { width, height, minSide: o.minSide },
      },
    );
  }
  if (long / short > o.maxAspectRatio) {
    throw new ApiError(
      'IMAGE_ASPECT_RATIO_TOO_EXTREME',
      `The image is ${width}×${height} (ratio ${(long / short).toFixed(1)}:1); at most ${o.maxAspectRatio}:1 is accepted (MAX_ASPECT_RATIO)`,
      {
        extensions: { width, height, ratio: Number((long / short).toFixed(2)), maxAspectRatio: o.maxAspectRatio },
      },
    );
  }
}

/** The first BMP_HEADER_BYTES of a file and its size. */
async function withBmpHead<T>(path: string, fn: (head: Buffer, size: number) => T): Promise<T> {
  const fh = await open(path, 'r');
  try {
    const head = Buffer.alloc(BMP_HEADER_BYTES);
    const { bytesRead } = await fh.read(head, 0, head.length, 0);
    const { size } = await fh.stat();
    return fn(head.subarray(0, bytesRead), size);
  } finally {
    await fh.close();
  }
}

/** Dimensions from the header only: cheap even for a tiny file that claims 50000×50000. */
async function headerDimensions(path: string, format: InputFormat): Promise<{ width: number; height: number }> {
  try {
    if (format === 'bmp') return await withBmpHead(path, (head) => bmpDimensions(head));
    const sharp = await loadSharp();
    const meta = await sharp(path, { limitInputPixels: false }).metadata();
    const width = meta.autoOrient?.width ?? meta.width;
    const height = meta.autoOrient?.height ?? meta.height;
    if (!width || !height) throw new Error('the header has no dimensions');
    return { width, height };
  } catch (err) {
    throw new ApiError('IMAGE_UNREADABLE', `The ${format.toUpperCase()} image cannot be read (${(err as Error).message.split('\n')[0]})`);
  }
}
