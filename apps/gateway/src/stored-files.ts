import type { FastifyReply, FastifyRequest } from 'fastify';
import { ApiError } from '@photoenhance/contracts';
import type { ByteRange, Storage } from '@photoenhance/storage';

/**
 * One `bytes=` range of an object of `size` bytes (RFC 9110 §14): undefined = send it whole (no header, several
 * ranges, or a header we do not understand); 'unsatisfiable' = 416.
 */
export function parseRange(header: string | undefined, size: number): ByteRange | 'unsatisfiable' | undefined {
  if (!header) return undefined;
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  if (m[1] === '') {
    const n = Number(m[2]);
    if (n === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(m[1]);
  if (start >= size) return 'unsatisfiable';
  const end = m[2] === '' ? size - 1 : Number(m[2]);
  if (end < start) return undefined;
  return { start, end: Math.min(end, size - 1) };
}

export interface SendStoredOptions {
  contentType: string;
  contentDisposition?: string;
  cacheControl?: string;
  /** `presigned`: answer 302 to a short-lived URL of the object store instead of streaming (where it has one). */
  redirect?: { expiresInSeconds: number };
}

/**
 * Stream a stored object to the client with Content-Length, ETag, Last-Modified and single-range support (206/416),
 * straight from the backend (never buffered). Returns undefined when the object does not exist (callers answer with
 * their own error).
 */
export async function sendStored(
  storage: Storage,
  req: FastifyRequest,
  reply: FastifyReply,
  key: string,
  o: SendStoredOptions,
): Promise<FastifyReply | undefined> {
  if (o.redirect && storage.presign) {
    if (!(await storage.stat(key))) return undefined;
    const url = await storage.presign(key, {
      expiresInSeconds: o.redirect.expiresInSeconds,
      contentType: o.contentType,
      ...(o.contentDisposition ? { contentDisposition: o.contentDisposition } : {}),
    });
    return reply.code(302).header('location', url).header('cache-control', 'no-store').send();
  }
  const rangeHeader = req.headers.range;
  let range: ByteRange | undefined;
  if (rangeHeader) {
    const info = await storage.stat(key);
    if (!info) return undefined;
    const ifRange = req.headers['if-range'];
    // If-Range with another validator: the file changed since the client's first part, so it gets the whole file.
    const parsed = ifRange && ifRange !== info.etag ? undefined : parseRange(rangeHeader, info.size);
    if (parsed === 'unsatisfiable') {
      throw new ApiError(
        'RANGE_NOT_SATISFIABLE',
        `The range ${JSON.stringify(rangeHeader.slice(0, 60))} is outside the file (${info.size} bytes)`,
        {
          headers: { 'content-range': `bytes */${info.size}` },
          extensions: { size: info.size },
        },
      );
    }
    range = parsed;
  }
  const obj = await storage.openRead(key, range ? { range } : {});
  if (!obj) return undefined;
  const inm = req.headers['if-none-match'];
  if (
    !range &&
    inm &&
    inm
      .split(',')
      .map((s) => s.trim())
      .includes(obj.etag)
  ) {
    obj.stream.destroy();
    return reply.code(304).header('etag', obj.etag).send();
  }
  reply
    .type(o.contentType)
    .header('etag', obj.etag)
    .header('last-modified', obj.lastModified.toUTCString())
    .header('accept-ranges', 'bytes');
  if (o.contentDisposition) reply.header('content-disposition', o.contentDisposition);
  if (o.cacheControl) reply.header('cache-control', o.cacheControl);
  if (range) {
    reply
      .code(206)
      .header('content-range', `bytes ${range.start}-${range.end}/${obj.size}`)
      .header('content-length', range.end - range.start + 1);
  } else {
    reply.header('content-length', obj.size);
  }
  return reply.send(obj.stream);
}

/** The download name of a job's result: `<input stem>_enhanced.<ext>`. */
export function downloadName(inputName: string, ext: string): string {
  const stem = inputName.replace(/\.[^.]*$/, '') || 'photo';
  return `${stem}_enhanced.${ext}`;
}

export function contentDisposition(name: string): string {
  const ascii = name.replace(/[^\x20-\x7e]/g, '_').replace(/["\\]/g, '_');
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(name)}`;
}
