import { createRequire } from 'node:module';
import type { IncomingMessage } from 'node:http';
import { ApiError } from '@photoenhance/contracts';

/**
 * Guards a multipart body against the parser (busboy, under @fastify/multipart) silently dropping or stalling on it.
 *
 * Why: busboy skips a part it cannot use (no `Content-Disposition: form-data`, a name or file name with a line break,
 * e.g. `filename*=UTF-8''a%0D%0Ab.jpg`) by resume()-ing it on the next tick. When such a part carries more than one
 * stream buffer (16 KiB) and ends in the same chunk as the body, Dicer pauses on it and holds the write callback; the
 * part ends without another `_read`, so nothing ever releases the callback and the request never gets an answer.
 * Small skipped parts just vanish. So:
 * - the sentinel reads the same bytes as busboy (an extra 'data' listener, no change to flow) and refuses any part
 *   busboy would skip, with busboy's own parameter parser, and a body that ends without its closing boundary;
 * - the stall timer refuses a walk that has made no progress for `stallMs` although the client is not the one
 *   holding it up (the body was fully received, or it is paused because nobody reads it).
 * Either failure is a 400 MALFORMED_MULTIPART; the caller closes the connection after a bounded drain.
 */

type Params = Array<string | [string, string]>;
type ParseParams = (s: string) => Params;

let parseParams: ParseParams | undefined;
try {
  // The very parser busboy uses, from the busboy that @fastify/multipart loads, so both read parameters alike.
  const fromMultipart = createRequire(createRequire(import.meta.url).resolve('@fastify/multipart'));
  parseParams = fromMultipart('@fastify/busboy/lib/utils/parseParams.js') as ParseParams;
} catch {
  parseParams = undefined; // the stall timer still guards
}

const CRLF = Buffer.from('\r\n');
const HEADER_END = Buffer.from('\r\n\r\n');
/** A part's header block larger than this is not a form (busboy would allow 80 KiB; browsers send a few hundred bytes). */
const MAX_HEADER_BYTES = 16 * 1024;

export function malformed(message: string, extensions: Record<string, unknown> = {}): ApiError {
  return new ApiError('MALFORMED_MULTIPART', message, { extensions, headers: { connection: 'close' } });
}

/** The boundary as busboy reads it from the Content-Type, or undefined. */
export function boundaryOf(contentType: string | undefined): string | undefined {
  if (!contentType || !parseParams) return undefined;
  for (const p of parseParams(contentType)) if (Array.isArray(p) && /^boundary$/i.test(p[0])) return p[1];
  return undefined;
}

/** Incremental scan of a multipart body for part headers; bounded memory (one header block or one delimiter). */
export class PartHeaderSentinel {
  private readonly delimiter: Buffer;
  private pending: Buffer = CRLF; // busboy prepends CRLF too, so a delimiter at offset 0 is found
  private state: 'seek' | 'after-delimiter' | 'headers' | 'done' = 'seek';
  private parts = 0;
  /** Set once the closing delimiter was seen. */
  closed = false;

  constructor(boundary: string) {
    this.delimiter = Buffer.from(`\r\n--${boundary}`);
  }

  /** Feed the next body bytes; returns the problem for the first part busboy would drop. */
  feed(chunk: Buffer): ApiError | undefined {
    if (this.state === 'done') return undefined;
    let data = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    this.pending = Buffer.alloc(0);
    for (let guard = 0; guard < 100_000; guard++) {
      if (this.state === 'seek') {
        const i = data.indexOf(this.delimiter);
        if (i < 0) {
          this.pending = Buffer.from(data.subarray(Math.max(0, data.length - this.delimiter.length + 1)));
          return undefined;
        }
        data = data.subarray(i + this.delimiter.length);
        this.state = 'after-delimiter';
      } else if (this.state === 'after-delimiter') {
        if (data.length < 2) {
          this.pending = Buffer.from(data);
          return undefined;
        }
        if (data[0] === 0x2d && data[1] === 0x2d) {
          this.state = 'done';
          this.closed = true;
          return undefined;
        }
        this.state = 'headers';
      } else if (this.state === 'headers') {
        const end = data.indexOf(HEADER_END);
        if (end < 0) {
          if (data.length > MAX_HEADER_BYTES)
            return malformed(`The headers of part ${this.parts + 1} are longer than ${MAX_HEADER_BYTES} bytes`);
          this.pending = Buffer.from(data);
          return undefined;
        }
        if (end > MAX_HEADER_BYTES) return malformed(`The headers of part ${this.parts + 1} are longer than ${MAX_HEADER_BYTES} bytes`);
        this.parts++;
        const problem = judgeHeaders(data.subarray(0, end).toString('latin1'), this.parts);
        if (problem) return problem;
        // The body starts after the blank line; its CRLF belongs to the next delimiter when the part is empty.
        data = data.subarray(end + 2);
        this.state = 'seek';
      } else {
        return undefined;
      }
    }
    return undefined;
  }
}

/** The reasons busboy drops a part (lib/types/multipart.js: skipPart), as a problem. */
function judgeHeaders(block: string, n: number): ApiError | undefined {
  // Unfold continuation lines, as busboy's HeaderParser does.
  const lines: string[] = [];
  for (const line of block.split('\r\n')) {
    if (/^[ \t]/.test(line) && lines.length) lines[lines.length - 1] += line.trimStart();
    else if (line.length) lines.push(line);
  }
  const disposition = lines.find((l) => /^content-disposition\s*:/i.test(l));
  if (!disposition) return malformed(`Part ${n} has no Content-Disposition header`, { part: n });
  if (!parseParams) return undefined;
  const params = parseParams(disposition.slice(disposition.indexOf(':') + 1).trim());
  if (typeof params[0] !== 'string' || !/^form-data$/i.test(params[0])) {
    return malformed(`Part ${n} is not a form field (Content-Disposition must be form-data)`, { part: n });
  }
  let named = false;
  for (const p of params.slice(1)) {
    if (!Array.isArray(p)) continue;
    const [key, value] = p;
    if (!/^(name|filename)$/i.test(key)) continue;
    if (/^name$/i.test(key)) named = true;
    if (/[\r\n]/.test(value)) return malformed(`The ${key.toLowerCase()} of part ${n} contains a line break`, { part: n });
  }
  if (!named) return malformed(`Part ${n} has no name`, { part: n });
  return undefined;
}

export interface MultipartWatch {
  /** Rejects with the first problem found; never resolves. */
  failed: Promise<never>;
  /** Count a step of the walk (a part taken, file bytes read) as progress. */
  progress(): void;
  /** The body ended: refuse it when the closing boundary never came. */
  stop(): void;
}

/**
 * Watch `req` while a multipart walk runs: the sentinel over its bytes and the stall timer. Attach only once the
 * parser is piped (an extra 'data' listener on a flowing or piped stream observes without changing the flow).
 */
export function watchMultipart(req: IncomingMessage, o: { stallMs: number; fileBytes: () => number }): MultipartWatch {
  const boundary = boundaryOf(req.headers['content-type']);
  const sentinel = boundary ? new PartHeaderSentinel(boundary) : undefined;
  let fail!: (err: ApiError) => void;
  const failed = new Promise<never>((_, reject) => {
    fail = reject;
  });
  failed.catch(() => undefined); // observed through the race; never an unhandled rejection
  let done = false;
  let marks = 0;
  let lastMark = -1;
  let lastChange = Date.now();
  const finish = (err: ApiError): void => {
    if (done) return;
    done = true;
    cleanup();
    fail(err);
  };
  const onData = (chunk: Buffer): void => {
    marks++;
    bytes += chunk.length;
    const problem = sentinel?.feed(chunk);
    if (problem) finish(problem);
  };
  let bytes = 0;
  const onEnd = (): void => {
    // An empty body is no form at all: the walk reports the missing part (IMAGE_REQUIRED), which helps more.
    if (sentinel && !sentinel.closed && bytes > 0) finish(malformed('The multipart body ends without its closing boundary'));
  };
  const timer = setInterval(
    () => {
      const now = Date.now();
      const mark = marks + o.fileBytes();
      if (mark !== lastMark) {
        lastMark = mark;
        lastChange = now;
        return;
      }
      // Waiting for a slow client is the idle and request timeouts' business, not a stall of ours.
      const waitingOnClient = !req.complete && req.readableFlowing !== false;
      if (!waitingOnClient && now - lastChange >= o.stallMs) {
        finish(
          malformed(`The multipart parser made no progress for ${o.stallMs} ms on a body that was sent; the body is malformed`, {
            stalledMs: now - lastChange,
          }),
        );
      }
    },
    Math.max(50, Math.min(1000, Math.floor(o.stallMs / 4))),
  );
  timer.unref();
  req.on('data', onData);
  req.once('end', onEnd);
  function cleanup(): void {
    clearInterval(timer);
    req.off('data', onData);
    req.off('end', onEnd);
  }
  return {
    failed,
    progress: () => {
      marks++;
    },
    stop: () => {
      if (!done) {
        done = true;
        cleanup();
      }
    },
  };
}
