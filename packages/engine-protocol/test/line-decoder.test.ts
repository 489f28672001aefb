import { describe, expect, it } from 'vitest';
import { LineDecoder } from '../src/index.js';

describe('LineDecoder', () => {
  it('joins partial chunks and splits several lines in one chunk', () => {
    const d = new LineDecoder();
    expect(d.push('{"a":')).toEqual([]);
    expect(d.push('1}\n{"b":2}\n{"c"')).toEqual(['{"a":1}', '{"b":2}']);
    expect(d.push(':3}\n')).toEqual(['{"c":3}']);
  });

  it('keeps a UTF-8 character split across chunks intact, and strips CRLF', () => {
    const bytes = Buffer.from('{"m":"Zoë 🙂"}\r\n', 'utf8');
    const d = new LineDecoder();
    const cut = bytes.indexOf(0xf0) + 2; // inside the 4-byte emoji
    expect(d.push(bytes.subarray(0, cut))).toEqual([]);
    expect(d.push(bytes.subarray(cut))).toEqual(['{"m":"Zoë 🙂"}']);
  });

  it('skips blank lines unless told not to', () => {
    expect(new LineDecoder().push('\n  \nx\n\n')).toEqual(['x']);
    expect(new LineDecoder({ skipBlank: false }).push('\nx\n')).toEqual(['', 'x']);
  });

  it('returns an unterminated last line on end()', () => {
    const d = new LineDecoder();
    expect(d.push('a\nb')).toEqual(['a']);
    expect(d.end()).toEqual(['b']);
    expect(d.end()).toEqual([]);
  });

  it('drops an over-long line as it arrives, reports it once, and carries on', () => {
    const overflows: Array<{ head: string; bytes: number }> = [];
    const d = new LineDecoder({ maxLineBytes: 16, onOverflow: (o) => overflows.push(o) });
    expect(d.push('short\n0123456789')).toEqual(['short']);
    expect(d.push('abcdefghij')).toEqual([]);
    expect(d.push('x'.repeat(100_000))).toEqual([]);
    expect(overflows).toHaveLength(1);
    expect(overflows[0]!.head.startsWith('0123456789abcdef')).toBe(true);
    expect(d.push('tail\nnext\n')).toEqual(['next']);
    expect(d.push('0123456789abcdef\n')).toEqual(['0123456789abcdef']); // exactly the cap is fine
  });

  it('handles a very long line under the cap split into many chunks', () => {
    const d = new LineDecoder({ maxLineBytes: 4 * 1024 * 1024 });
    const payload = JSON.stringify({ blob: 'y'.repeat(3 * 1024 * 1024) });
    const out: string[] = [];
    for (let i = 0; i < payload.length; i += 65_536) out.push(...d.push(payload.slice(i, i + 65_536)));
    out.push(...d.push('\n'));
    expect(out).toHaveLength(1);
    expect(out[0]!.length).toBe(payload.length);
  });

  it('rejects a nonsense cap', () => {
    expect(() => new LineDecoder({ maxLineBytes: 0 })).toThrow(/maxLineBytes/);
  });
});
