import { Type, type Static } from '@sinclair/typebox';
import { ApiError } from './errors.js';

/** Image formats the API accepts (by magic bytes) and the formats it can write. */
export const INPUT_FORMATS = ['jpeg', 'png', 'webp', 'bmp', 'tiff'] as const;
export type InputFormat = (typeof INPUT_FORMATS)[number];
export const OUTPUT_FORMATS = ['png', 'jpeg', 'webp'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

export const SCALES = [1, 2, 4] as const;
export const GFPGAN_VERSIONS = ['1', '1.2', '1.3', '1.4', 'RestoreFormer'] as const;
export const PRIORITIES = ['high', 'normal', 'low'] as const;

/**
 * Enhancement options as a client may send them. One source for validation, types and the OpenAPI document.
 * Engines ignore options they do not support; the job records what was applied.
 */
export const JobOptionsSchema = Type.Object({
  scale: Type.Union(SCALES.map((s) => Type.Literal(s)), { default: 2, description: 'Upscale factor.' }),
  version: Type.Union(GFPGAN_VERSIONS.map((v) => Type.Literal(v)), { default: '1.4', description: 'GFPGAN model version (face-restoring engines).' }),
  weight: Type.Number({ minimum: 0, maximum: 1, default: 0.5, description: 'Blend weight of the restored faces.' }),
  onlyCenterFace: Type.Boolean({ default: false, description: 'Restore only the face nearest the centre.' }),
  aligned: Type.Boolean({ default: false, description: 'Input is an aligned 512x512 face crop.' }),
  bgUpsampler: Type.Union([Type.Literal('realesrgan'), Type.Literal('none')], { default: 'realesrgan', description: 'Background upsampler (engines without one ignore it).' }),
  bgTile: Type.Integer({ minimum: 0, maximum: 1024, default: 400, description: 'Background tile size in pixels: 0 (no tiling) or 32..1024.' }),
  format: Type.Union([Type.Literal('auto'), ...OUTPUT_FORMATS.map((f) => Type.Literal(f))], { default: 'auto', description: 'Output format; auto keeps png/jpeg/webp and writes png otherwise.' }),
  quality: Type.Integer({ minimum: 1, maximum: 100, default: 92, description: 'Encoder quality for jpeg/webp.' }),
  priority: Type.Union(PRIORITIES.map((p) => Type.Literal(p)), { default: 'normal', description: 'Queue priority.' }),
  denoise: Type.Optional(Type.Boolean({ description: 'classic: denoise when the photo measures noisy (default true); false turns the step off.' })),
  tone: Type.Optional(Type.Boolean({ description: 'classic: correct a washed-out photo\'s tones (default true); false turns the step off.' })),
  sharpen: Type.Optional(Type.Boolean({ description: 'classic: halo-free detail sharpening (default true); false turns the step off.' })),
});
export type JobOptionsInput = Static<typeof JobOptionsSchema>;

/** Options after defaults and `format: auto` are resolved: what the worker sends to the engine. */
export interface JobOptions {
  scale: 1 | 2 | 4;
  version: (typeof GFPGAN_VERSIONS)[number];
  weight: number;
  onlyCenterFace: boolean;
  aligned: boolean;
  bgUpsampler: 'realesrgan' | 'none';
  bgTile: number;
  format: OutputFormat;
  quality: number;
  priority: (typeof PRIORITIES)[number];
  /** Enhancement steps of the classic engine (and the background of portrait); absent = true. */
  denoise?: boolean;
  tone?: boolean;
  sharpen?: boolean;
}

export const DEFAULT_OPTIONS: Readonly<Omit<JobOptions, 'format'> & { format: 'auto' | OutputFormat }> = Object.freeze({
  scale: 2,
  version: '1.4',
  weight: 0.5,
  onlyCenterFace: false,
  aligned: false,
  bgUpsampler: 'realesrgan',
  bgTile: 400,
  format: 'auto',
  quality: 92,
  priority: 'normal',
});

/** Optional on/off switches of enhancement steps: absent means on, so they have no entry in DEFAULT_OPTIONS. */
export const STEP_OPTIONS = ['denoise', 'tone', 'sharpen'] as const;

/** Field names accepted in a submission besides the image part. */
export const OPTION_FIELDS = ['engine', ...Object.keys(DEFAULT_OPTIONS), ...STEP_OPTIONS] as const;

function invalid(field: string, allowed: string, received: string): never {
  const shown = received.length > 60 ? `${received.slice(0, 60)}…` : received;
  throw new ApiError('INVALID_OPTION', `Field "${field}" must be ${allowed}; received ${JSON.stringify(shown)}`, {
    extensions: { field, allowed, received: shown },
  });
}

function oneOf<T extends string | number>(field: string, raw: string, values: readonly T[]): T {
  const hit = values.find((v) => String(v) === raw.trim());
  if (hit === undefined) invalid(field, `one of ${values.map((v) => String(v)).join(', ')}`, raw);
  return hit;
}

function bool(field: string, raw: string): boolean {
  const v = raw.trim().toLowerCase();
  if (['true', '1', 'yes', 'on'].includes(v)) return true;
  if (['false', '0', 'no', 'off'].includes(v)) return false;
  return invalid(field, 'a boolean (true or false)', raw);
}

function num(field: string, raw: string, min: number, max: number, integer: boolean): number {
  const s = raw.trim();
  const n = s === '' ? Number.NaN : Number(s);
  if (!Number.isFinite(n) || (integer && !Number.isInteger(n)) || n < min || n > max) {
    invalid(field, `${integer ? 'an integer' : 'a number'} from ${min} to ${max}`, raw);
  }
  return n;
}

/**
 * Parse submission fields (strings, as multipart delivers them) into options with defaults applied.
 * `format` stays `auto` here; `resolveFormat` settles it once the input format is known.
 * Throws ApiError INVALID_OPTION naming the field, what is allowed and what arrived.
 */
export function parseJobOptions(fields: Readonly<Record<string, string | undefined>>): {
  engine?: string;
  options: Omit<JobOptions, 'format'> & { format: 'auto' | OutputFormat };
} {
  for (const key of Object.keys(fields)) {
    if (!(OPTION_FIELDS as readonly string[]).includes(key)) {
      invalid(key, `one of the known fields (${OPTION_FIELDS.join(', ')})`, key);
    }
  }
  const o = { ...DEFAULT_OPTIONS };
  const f = fields;
  if (f.scale !== undefined) o.scale = Number(oneOf('scale', f.scale, ['1', '2', '4'] as const)) as JobOptions['scale'];
  if (f.version !== undefined) o.version = oneOf('version', f.version, GFPGAN_VERSIONS);
  if (f.weight !== undefined) o.weight = num('weight', f.weight, 0, 1, false);
  if (f.onlyCenterFace !== undefined) o.onlyCenterFace = bool('onlyCenterFace', f.onlyCenterFace);
  if (f.aligned !== undefined) o.aligned = bool('aligned', f.aligned);
  if (f.bgUpsampler !== undefined) o.bgUpsampler = oneOf('bgUpsampler', f.bgUpsampler, ['realesrgan', 'none'] as const);
  if (f.bgTile !== undefined) {
    const t = num('bgTile', f.bgTile, 0, 1024, true);
    if (t !== 0 && t < 32) invalid('bgTile', '0 (no tiling) or an integer from 32 to 1024', f.bgTile);
    o.bgTile = t;
  }
  if (f.format !== undefined) o.format = oneOf('format', f.format, ['auto', ...OUTPUT_FORMATS] as const);
  if (f.quality !== undefined) o.quality = num('quality', f.quality, 1, 100, true);
  if (f.priority !== undefined) o.priority = oneOf('priority', f.priority, PRIORITIES);
  for (const k of STEP_OPTIONS) if (f[k] !== undefined) o[k] = bool(k, f[k]);
  let engine: string | undefined;
  if (f.engine !== undefined) {
    engine = f.engine.trim();
    if (!/^[a-z0-9][a-z0-9._-]{0,63}$/i.test(engine)) invalid('engine', 'an engine name (letters, digits, . _ -)', f.engine);
  }
  return { engine, options: o };
}

/** `auto` keeps png/jpeg/webp and writes png for everything else (bmp, tiff). */
export function resolveFormat(requested: 'auto' | OutputFormat, input: InputFormat): OutputFormat {
  if (requested !== 'auto') return requested;
  return input === 'jpeg' || input === 'png' || input === 'webp' ? input : 'png';
}

export const FORMAT_EXTENSIONS: Record<InputFormat, string> = { jpeg: 'jpg', png: 'png', webp: 'webp', bmp: 'bmp', tiff: 'tiff' };
export const FORMAT_CONTENT_TYPES: Record<InputFormat, string> = {
  jpeg: 'image/jpeg',
  png: 'image/png',
  webp: 'image/webp',
  bmp: 'image/bmp',
  tiff: 'image/tiff',
};

/** Decide the image type from its first bytes, whatever its name or Content-Type claim. */
export function sniffImageFormat(head: Uint8Array): InputFormat | undefined {
  const b = head;
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg';
  if (b.length >= 8 && b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47 && b[4] === 0x0d && b[5] === 0x0a && b[6] === 0x1a && b[7] === 0x0a) return 'png';
  if (b.length >= 12 && b[0] === 0x52 && b[1] === 0x49 && b[2] === 0x46 && b[3] === 0x46 && b[8] === 0x57 && b[9] === 0x45 && b[10] === 0x42 && b[11] === 0x50) return 'webp';
  if (b.length >= 2 && b[0] === 0x42 && b[1] === 0x4d) return 'bmp';
  if (b.length >= 4 && ((b[0] === 0x49 && b[1] === 0x49 && b[2] === 0x2a && b[3] === 0x00) || (b[0] === 0x4d && b[1] === 0x4d && b[2] === 0x00 && b[3] === 0x2a))) return 'tiff';
  return undefined;
}
