/**
 * Splits a byte stream into lines for the JSON-lines protocol. Used by engines (stdin) and by the worker (engine stdout).
 *
 * Works on bytes, so a UTF-8 character split across chunks is never mangled (0x0A never occurs inside a multi-byte
 * sequence). A line longer than `maxLineBytes` is dropped as it arrives — memory stays bounded even if the other side
 * writes gigabytes without a newline — and reported once through `onOverflow`.
 */
export interface LineDecoderOptions {
  /** Longest line kept, in bytes, without its newline. Default 1 MiB. */
  maxLineBytes?: number;
  /** Called once per over-long line, as soon as it passes the cap; `head` is its first 200 characters. */
  onOverflow?: (info: { head: string; bytes: number }) => void;
  /** Drop lines that are empty or only whitespace. Default true. */
  skipBlank?: boolean;
}

export const DEFAULT_MAX_LINE_BYTES = 1024 * 1024;

const NEWLINE = 0x0a;

export class LineDecoder {
  private readonly max: number;
  private readonly onOverflow: LineDecoderOptions['onOverflow'];
  private readonly skipBlank: boolean;
  private parts: Buffer[] = [];
  private size = 0;
  /** Inside an over-long line: discard until the next newline. */
  private skipping = false;

  constructor(opts: LineDecoderOptions = {}) {
    this.max = opts.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
    if (!Number.isInteger(this.max) || this.max < 1)
      throw new RangeError(`maxLineBytes must be a positive integer; received ${String(opts.maxLineBytes)}`);
    this.onOverflow = opts.onOverflow;
    this.skipBlank = opts.skipBlank ?? true;
  }

  /** Feed a chunk; returns the lines it completed, without their line ends (`\n` or `\r\n`). */
  push(chunk: Buffer | string): string[] {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
    const lines: string[] = [];
    let start = 0;
    while (start < buf.length) {
      const nl = buf.indexOf(NEWLINE, start);
      const end = nl === -1 ? buf.length : nl;
      this.append(buf.subarray(start, end));
      if (nl === -1) break;
      this.finishLine(lines);
      start = nl + 1;
    }
    return lines;
  }

  /** The stream ended: returns the last line if it had no newline. */
  end(): string[] {
    const lines: string[] = [];
    if (this.size > 0 || this.skipping) this.finishLine(lines);
    return lines;
  }

  private append(piece: Buffer): void {
    if (piece.length === 0) return;
    if (this.skipping) return;
    if (this.size + piece.length > this.max) {
      const head = Buffer.concat([...this.parts, piece.subarray(0, 800)])
        .toString('utf8')
        .slice(0, 200);
      const bytes = this.size + piece.length;
      this.parts = [];
      this.size = 0;
      this.skipping = true;
      this.onOverflow?.({ head, bytes });
      return;
    }
    // Copy: the caller may reuse its chunk buffer.
    this.parts.push(Buffer.from(piece));
    this.size += piece.length;
  }

  private finishLine(out: string[]): void {
    if (this.skipping) {
      this.skipping = false;
      return;
    }
    let text = (this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.size)).toString('utf8');
    this.parts = [];
    this.size = 0;
    if (text.endsWith('\r')) text = text.slice(0, -1);
    if (this.skipBlank && text.trim() === '') return;
    out.push(text);
  }
}

/**
 * Read a stream line by line. Returns a function that detaches the listeners.
 * `onEnd` runs after the last line when the stream ends or closes.
 */
export function readLines(
  stream: NodeJS.ReadableStream,
  onLine: (line: string) => void,
  opts: LineDecoderOptions & { onEnd?: () => void } = {},
): () => void {
  const decoder = new LineDecoder(opts);
  let ended = false;
  const onData = (chunk: Buffer | string): void => {
    for (const line of decoder.push(chunk)) onLine(line);
  };
  const onFinish = (): void => {
    if (ended) return;
    ended = true;
    for (const line of decoder.end()) onLine(line);
    opts.onEnd?.();
  };
  stream.on('data', onData);
  stream.on('end', onFinish);
  stream.on('close', onFinish);
  return () => {
    stream.off('data', onData);
    stream.off('end', onFinish);
    stream.off('close', onFinish);
  };
}
