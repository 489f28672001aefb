import { describe, expect, it } from 'vitest';
import { OPTION_FIELDS, parseJobOptions } from '@photoenhance/contracts';
import { CLASSIC_CAPABILITIES } from '../src/index.js';

/** The per-job switches of classic's steps, as a client sends them (multipart text fields). */
describe('denoise / tone / sharpen options', () => {
  it('are accepted fields, absent by default (= on), parsed as booleans', () => {
    expect(OPTION_FIELDS).toEqual(expect.arrayContaining(['denoise', 'tone', 'sharpen']));
    const none = parseJobOptions({}).options;
    expect(none).not.toHaveProperty('denoise');
    expect(parseJobOptions({ denoise: 'false', tone: 'no', sharpen: '0' }).options).toMatchObject({
      denoise: false,
      tone: false,
      sharpen: false,
    });
    expect(parseJobOptions({ sharpen: 'true' }).options).toMatchObject({ sharpen: true });
    expect(CLASSIC_CAPABILITIES.options).toEqual(expect.arrayContaining(['denoise', 'tone', 'sharpen']));
  });

  it('refuse anything but a boolean with INVALID_OPTION naming the field', () => {
    expect(() => parseJobOptions({ denoise: 'maybe' })).toThrow(
      expect.objectContaining({ code: 'INVALID_OPTION', extensions: expect.objectContaining({ field: 'denoise' }) }),
    );
  });
});
