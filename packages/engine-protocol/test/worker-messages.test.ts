import { describe, expect, it } from 'vitest';
import { DEFAULT_OPTIONS } from '@photoenhance/contracts';
import { ProtocolError, parseWorkerMessage, protocolErrorId } from '../src/index.js';

const job = { type: 'job', id: 'j1', input: '/data/in.jpg', output: '/data/out.png', options: { format: 'png', scale: 4 } };

describe('parseWorkerMessage', () => {
  it('accepts a job and fills missing options with defaults', () => {
    const m = parseWorkerMessage(JSON.stringify(job));
    expect(m).toEqual({ ...job, options: { ...DEFAULT_OPTIONS, format: 'png', scale: 4 } });
  });

  it('accepts cancel and shutdown', () => {
    expect(parseWorkerMessage('{"type":"cancel","id":"j1"}')).toEqual({ type: 'cancel', id: 'j1' });
    expect(parseWorkerMessage('{"type":"shutdown"}')).toEqual({ type: 'shutdown' });
  });

  it.each([
    ['not json', /not JSON/],
    ['[1,2]', /without "type"/],
    ['{"type":"dance"}', /unknown message type "dance"/],
    ['{"type":"cancel"}', /cancel needs id/],
    [JSON.stringify({ ...job, input: 'relative.jpg' }), /absolute path/],
    [JSON.stringify({ ...job, options: { format: 'auto' } }), /options.format must be one of png, jpeg, webp/],
    [JSON.stringify({ ...job, options: { format: 'png', scale: 3 } }), /options.scale/],
    [JSON.stringify({ ...job, options: { format: 'jpeg', quality: 0 } }), /options.quality/],
  ])('rejects %s', (line, pattern) => {
    expect(() => parseWorkerMessage(line)).toThrow(ProtocolError);
    expect(() => parseWorkerMessage(line)).toThrow(pattern);
  });

  it('names the job id of a rejected job so the reply can carry it', () => {
    try {
      parseWorkerMessage(JSON.stringify({ ...job, options: null }));
      expect.unreachable();
    } catch (err) {
      expect(protocolErrorId(err)).toBe('j1');
    }
  });
});
