import { readFileSync } from 'node:fs';
import { Value } from '@sinclair/typebox/value';
import { describe, expect, it } from 'vitest';
import {
  ApiError,
  DEFAULT_OPTIONS,
  ERRORS,
  JobOptionsInputSchema,
  JobOptionsSchema,
  OPTION_FIELDS,
  decodeJobError,
  encodeJobError,
  parseEngineMessage,
  parseJobOptions,
  renderErrorCatalogue,
  resolveFormat,
  sniffImageFormat,
} from '../src/index.js';

describe('error catalogue', () => {
  it('docs/errors.md is the rendered catalogue', () => {
    const doc = readFileSync(new URL('../../../docs/errors.md', import.meta.url), 'utf8');
    expect(doc).toBe(renderErrorCatalogue());
  });

  it('every entry tells the user what to do', () => {
    for (const [code, e] of Object.entries(ERRORS)) {
      expect(code).toMatch(/^[A-Z][A-Z0-9_]+$/);
      expect(e.hint.length, code).toBeGreaterThan(20);
      expect(e.status).toBeGreaterThanOrEqual(400);
    }
  });

  it('problems carry the code, status and a detail with the hint', () => {
    const p = new ApiError('IMAGE_REQUIRED', 'No file part named "image"').toProblem('/v1/jobs');
    expect(p).toMatchObject({ code: 'IMAGE_REQUIRED', status: 400, instance: '/v1/jobs', title: 'No image part' });
    expect(p.detail).toContain(ERRORS.IMAGE_REQUIRED.hint);
  });

  it('job errors round-trip through a failedReason string', () => {
    expect(decodeJobError(encodeJobError({ code: 'ENGINE_CRASHED', message: 'exited with code 3' }))).toEqual({
      code: 'ENGINE_CRASHED',
      message: 'exited with code 3',
    });
    expect(decodeJobError('something odd')).toEqual({ code: 'ENGINE_FAILED', message: 'something odd' });
    expect(decodeJobError(undefined)).toBeUndefined();
  });
});

describe('job options', () => {
  it('applies defaults', () => {
    // bgTile has no default: the worker chooses it per job (FALLBACK_BG_TILE without a GPU).
    expect(parseJobOptions({}).options).toEqual({
      scale: 2,
      version: '1.4',
      weight: 0.5,
      onlyCenterFace: false,
      aligned: false,
      bgUpsampler: 'realesrgan',
      format: 'auto',
      quality: 92,
      priority: 'normal',
    });
    expect(DEFAULT_OPTIONS).toEqual(parseJobOptions({}).options);
    expect(Object.isFrozen(DEFAULT_OPTIONS)).toBe(true);
  });

  it('bgTile "auto" (any case) leaves it unset; an explicit tile is kept; the step switches stay absent unless sent', () => {
    expect(parseJobOptions({ bgTile: 'auto' }).options).not.toHaveProperty('bgTile');
    expect(parseJobOptions({ bgTile: ' AUTO ' }).options).not.toHaveProperty('bgTile');
    expect(parseJobOptions({ bgTile: '512' }).options.bgTile).toBe(512);
    expect(parseJobOptions({ bgTile: '0' }).options.bgTile).toBe(0);
    expect(parseJobOptions({ denoise: 'off', sharpen: 'yes' }).options).toMatchObject({ denoise: false, sharpen: true });
    expect(parseJobOptions({}).options).not.toHaveProperty('tone');
    // "auto" is for choosable numbers only
    expect(() => parseJobOptions({ quality: 'auto' })).toThrow(ApiError);
    expect(() => parseJobOptions({ denoise: 'auto' })).toThrow(ApiError);
  });

  it('the schema is the one statement: fields, defaults, and what the parser accepts agree with it', () => {
    expect(OPTION_FIELDS).toEqual(['engine', ...Object.keys(JobOptionsInputSchema.properties)]);
    for (const [field, schema] of Object.entries(JobOptionsInputSchema.properties)) {
      const d = (schema as { default?: unknown }).default;
      if (d === undefined) expect(DEFAULT_OPTIONS).not.toHaveProperty(field);
      else expect(DEFAULT_OPTIONS).toHaveProperty(field, d);
    }
    // Every parsed submission is valid by the schema; resolved options are valid by JobOptionsSchema.
    const { options } = parseJobOptions({ scale: '4', bgTile: '32', weight: '1', quality: '1', version: '1', tone: 'false' });
    expect(Value.Check(JobOptionsInputSchema, options)).toBe(true);
    expect(Value.Check(JobOptionsSchema, { ...options, format: resolveFormat(options.format, 'tiff') })).toBe(true);
    expect(Value.Check(JobOptionsSchema, options)).toBe(false); // format auto is not resolved
    expect(Value.Check(JobOptionsInputSchema, { ...options, colour: 'red' })).toBe(false);
  });

  it('parses every field', () => {
    const { engine, options } = parseJobOptions({
      engine: 'gfpgan',
      scale: '4',
      version: 'RestoreFormer',
      weight: '0.25',
      onlyCenterFace: 'true',
      aligned: 'yes',
      bgUpsampler: 'none',
      bgTile: '0',
      format: 'webp',
      quality: '80',
      priority: 'high',
    });
    expect(engine).toBe('gfpgan');
    expect(options).toEqual({
      scale: 4,
      version: 'RestoreFormer',
      weight: 0.25,
      onlyCenterFace: true,
      aligned: true,
      bgUpsampler: 'none',
      bgTile: 0,
      format: 'webp',
      quality: 80,
      priority: 'high',
    });
  });

  it.each([
    ['scale', '3', 'one of 1, 2, 4'],
    ['weight', '-0.1', 'a number from 0 to 1'],
    ['weight', 'abc', 'a number from 0 to 1'],
    ['bgTile', '31', '0 (no tiling) or an integer from 32 to 1024'],
    ['bgTile', '2000', 'an integer from 0 to 1024'],
    ['bgTile', 'automatic', 'an integer from 0 to 1024'],
    ['bgTile', '64.5', 'an integer from 0 to 1024'],
    ['scale', '', 'one of 1, 2, 4'],
    ['priority', 'urgent', 'one of high, normal, low'],
    ['version', '2.0', 'one of 1, 1.2, 1.3, 1.4, RestoreFormer'],
    ['quality', '92.5', 'an integer from 1 to 100'],
    ['format', 'gif', 'one of auto, png, jpeg, webp'],
    ['aligned', 'maybe', 'a boolean (true or false)'],
    ['engine', '../x', 'an engine name'],
  ])('%s=%s is refused, naming what is allowed', (field, value, allowed) => {
    try {
      parseJobOptions({ [field]: value });
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(ApiError);
      const e = err as ApiError;
      expect(e.code).toBe('INVALID_OPTION');
      expect(e.extensions).toMatchObject({ field, received: value });
      expect(String(e.extensions.allowed)).toContain(allowed);
    }
  });

  it('format auto keeps png/jpeg/webp and writes png otherwise', () => {
    expect(resolveFormat('auto', 'jpeg')).toBe('jpeg');
    expect(resolveFormat('auto', 'webp')).toBe('webp');
    expect(resolveFormat('auto', 'tiff')).toBe('png');
    expect(resolveFormat('auto', 'bmp')).toBe('png');
    expect(resolveFormat('jpeg', 'png')).toBe('jpeg');
  });

  it('sniffs types from magic bytes only', () => {
    expect(sniffImageFormat(Buffer.from([0xff, 0xd8, 0xff, 0xe0]))).toBe('jpeg');
    expect(sniffImageFormat(Buffer.from('89504e470d0a1a0a0000', 'hex'))).toBe('png');
    expect(sniffImageFormat(Buffer.from('RIFF\0\0\0\0WEBPVP8 '))).toBe('webp');
    expect(sniffImageFormat(Buffer.from('BM\0\0'))).toBe('bmp');
    expect(sniffImageFormat(Buffer.from([0x49, 0x49, 0x2a, 0x00]))).toBe('tiff');
    expect(sniffImageFormat(Buffer.from('GIF89a'))).toBeUndefined();
    expect(sniffImageFormat(Buffer.from('<html>'))).toBeUndefined();
  });
});

describe('engine protocol', () => {
  it('accepts well-formed messages and explains malformed ones', () => {
    expect(parseEngineMessage('{"type":"progress","id":"j","progress":0.5}')).toMatchObject({ type: 'progress', progress: 0.5 });
    expect(() => parseEngineMessage('hello')).toThrow(/not JSON/);
    expect(() => parseEngineMessage('{"type":"progress","id":"j","progress":2}')).toThrow(/between 0 and 1/);
    expect(() => parseEngineMessage('{"type":"teleport"}')).toThrow(/unknown message type/);
    expect(() => parseEngineMessage('{"type":"ready","engine":"x"}')).toThrow(/ready needs/);
  });
});
