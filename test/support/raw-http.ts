import { connect } from 'node:net';

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  /** From the first byte written to the full answer. */
  ms: number;
}

export type RawOutcome = RawResponse | { failure: 'hang' | 'closed-without-answer'; ms: number; error?: string };

/**
 * One HTTP/1.1 exchange over a raw socket, for requests no ordinary client will send (bad framing, slow bodies, lies).
 * `body` pieces are written in order; a number is a pause in ms (slow bodies). `writeBeforeRead`: read nothing until
 * every byte was handed to the kernel, as clients that send a whole upload before looking at the answer do.
 */
export function rawExchange(
  port: number,
  head: string,
  body: Array<Buffer | number> = [],
  o: { timeoutMs?: number; writeBeforeRead?: boolean } = {},
): Promise<RawOutcome> {
  const started = Date.now();
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let settled = false;
    let error: string | undefined;
    const finish = (out: RawOutcome): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(out);
    };
    const timer = setTimeout(() => finish({ failure: 'hang', ms: Date.now() - started }), o.timeoutMs ?? 15_000);
    const tryParse = (): RawResponse | undefined => {
      const buf = Buffer.concat(chunks);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return undefined;
      const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '')?.[1] ?? 0);
      const headers: Record<string, string> = {};
      for (const l of lines.slice(1)) {
        const i = l.indexOf(':');
        if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
      }
      const bodyBytes = buf.subarray(end + 4);
      const length = headers['content-length'] === undefined ? undefined : Number(headers['content-length']);
      if (length !== undefined && bodyBytes.length < length) return undefined;
      if (length === undefined && headers['transfer-encoding'] === 'chunked') {
        if (!bodyBytes.includes('\r\n0\r\n\r\n') && !bodyBytes.subarray(0, 5).equals(Buffer.from('0\r\n\r\n'))) return undefined;
        return { status, headers, body: dechunk(bodyBytes), ms: Date.now() - started };
      }
      return { status, headers, body: length === undefined ? bodyBytes : bodyBytes.subarray(0, length), ms: Date.now() - started };
    };
    socket.on('data', (d: Buffer) => {
      chunks.push(d);
      const r = tryParse();
      if (r) finish(r);
    });
    socket.on('error', (e) => {
      error = e.message;
    });
    socket.on('close', () =>
      finish(tryParse() ?? { failure: 'closed-without-answer', ms: Date.now() - started, ...(error ? { error } : {}) }),
    );
    if (o.writeBeforeRead) socket.pause();
    socket.on('connect', () => {
      void (async () => {
        const write = (b: Buffer | string): Promise<void> => new Promise((r) => (socket.destroyed ? r() : socket.write(b, () => r())));
        await write(head);
        for (const piece of body) {
          if (settled || socket.destroyed) break;
          if (typeof piece === 'number') await new Promise((r) => setTimeout(r, piece));
          else await write(piece);
        }
        if (o.writeBeforeRead) socket.resume();
      })();
    });
  });
}

function dechunk(b: Buffer): Buffer {
  const out: Buffer[] = [];
  let at = 0;
  for (let n = 0; n < 10_000; n++) {
    const eol = b.indexOf('\r\n', at);
    if (eol < 0) break;
    const size = parseInt(b.subarray(at, eol).toString('latin1'), 16);
    if (!size) break;
    out.push(b.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
  return Buffer.concat(out);
}

/** A multipart body built by hand: each part's raw header lines and its bytes; `close: false` leaves off the end. */
export function multipartBody(
  boundary: string,
  parts: Array<{ headers: string[]; data: Buffer | string }>,
  o: { close?: boolean } = {},
): Buffer {
  const pieces: Buffer[] = [];
  for (const p of parts) {
    pieces.push(Buffer.from(`--${boundary}\r\n${p.headers.map((h) => `${h}\r\n`).join('')}\r\n`, 'latin1'));
    pieces.push(typeof p.data === 'string' ? Buffer.from(p.data) : p.data);
    pieces.push(Buffer.from('\r\n'));
  }
  if (o.close !== false) pieces.push(Buffer.from(`--${boundary}--\r\n`));
  return Buffer.concat(pieces);
}

/** Request head for a POST with the given content type and length (undefined: no Content-Length). */
export function postHead(path: string, contentType: string | undefined, length: number | undefined, extra: string[] = []): string {
  const lines = [`POST ${path} HTTP/1.1`, 'Host: 127.0.0.1', 'Connection: close'];
  if (contentType !== undefined) lines.push(`Content-Type: ${contentType}`);
  if (length !== undefined) lines.push(`Content-Length: ${length}`);
  lines.push(...extra);
  return `${lines.join('\r\n')}\r\n\r\n`;
}
