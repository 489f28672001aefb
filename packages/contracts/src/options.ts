import { KindGuard, Type, type Static, type TLiteral, type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { ApiError } from './errors.js';

/** Image formats the API accepts (by magic bytes) and the formats it can write. */
export const INPUT_FORMATS = ['jpeg', 'png', 'webp', 'bmp', 'tiff'] as const;
export type InputFormat = (typeof INPUT_FORMATS)[number];
export const OUTPUT_FORMATS = ['png', 'jpeg', 'webp'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

export const SCALES = [1, 2, 4] as const;
export const GFPGAN_VERSIONS = ['1', '1.2', '1.3', '1.4', 'RestoreFormer'] as const;
export const PRIORITIES = ['high', 'normal', 'low'] as const;

const literals = <const V extends readonly (string | number)[]>(
  values: V,
  opts: { default?: NoInfer<V[number]>; description?: string } = {},
) =>
  Type.Union(
    values.map((v: V[number]) => Type.Literal(v)),
    opts,
  );

/**
 * Enhancement options as a client may send them: the one statement of the option set. The types, the defaults, the
 * submission parser (below), the routes and the OpenAPI document all come from it. Engines ignore options they do not
 * support; the job records what was applied. An optional number without a default (bgTile) is chosen per job when
 * left out: a client may also say `auto`.
 */
export const JobOptionsInputSchema = Type.Object(
  {
    scale: literals(SCALES, { default: 2, description: 'Upscale factor.' }),
    version: literals(GFPGAN_VERSIONS, { default: '1.4', description: 'GFPGAN model version (face-restoring engines).' }),
    weight: Type.Number({ minimum: 0, maximum: 1, default: 0.5, description: 'Blend weight of the restored faces.' }),
    onlyCenterFace: Type.Boolean({ default: false, description: 'Restore only the face nearest the centre.' }),
    aligned: Type.Boolean({ default: false, description: 'Input is an aligned 512x512 face crop.' }),
    bgUpsampler: literals(['realesrgan', 'none'] as const, {
      default: 'realesrgan',
      description: 'Background upsampler (engines without one ignore it).',
    }),
    // anyOf narrows the range (standard JSON Schema, checked by ajv and by parseJobOptions); the parser's message is
    // built from the branches, so "no tiling" is stated here only.
    bgTile: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: 1024,
        anyOf: [Type.Literal(0, { description: 'no tiling' }), Type.Integer({ minimum: 32 })],
        description:
          'Background tile size in pixels: 0 (no tiling) or 32..1024. Left out (or `auto`): the worker picks the largest even tile that fits the free memory of its GPU for this photo, 400 on a host without a visible GPU; the tile used is in `result.applied.bgTile` / `result.meta.bgTileChoice`.',
      }),
    ),
    format: literals(['auto', ...OUTPUT_FORMATS] as const, {
      default: 'auto',
      description: 'Output format; auto keeps png/jpeg/webp and writes png otherwise.',
    }),
    quality: Type.Integer({ minimum: 1, maximum: 100, default: 92, description: 'Encoder quality for jpeg/webp.' }),
    priority: literals(PRIORITIES, { default: 'normal', description: 'Queue priority.' }),
    denoise: Type.Optional(
      Type.Boolean({ description: 'classic: denoise when the photo measures noisy (default true); false turns the step off.' }),
    ),
    tone: Type.Optional(
      Type.Boolean({ description: "classic: correct a washed-out photo's tones (default true); false turns the step off." }),
    ),
    sharpen: Type.Optional(Type.Boolean({ description: 'classic: halo-free detail sharpening (default true); false turns the step off.' })),
  },
  { additionalProperties: false },
);
/** Options with defaults applied; `format` may still be `auto`, bgTile may be unset (chosen by the worker). */
export type JobOptionsInput = Static<typeof JobOptionsInputSchema>;

/** Options after `format: auto` is resolved from the input: what a job carries and the job view shows. */
export const JobOptionsSchema = Type.Composite(
  [
    Type.Omit(JobOptionsInputSchema, ['format']),
    Type.Object({
      format: literals(OUTPUT_FORMATS, { description: 'Output format (resolved from the input when `auto` was asked for).' }),
    }),
  ],
  { additionalProperties: false, description: 'Options with defaults applied; `format` resolved from the input.' },
);
export type JobOptions = Static<typeof JobOptionsSchema>;

/** The schema's defaults (bgTile and the classic steps have none: absent means "chosen per job" and "on"). */
export const DEFAULT_OPTIONS: Readonly<JobOptionsInput> = Object.freeze(Value.Default(JobOptionsInputSchema, {}) as JobOptionsInput);

/** bgTile when the worker sees no GPU to size it for: the fixed default before tiles were chosen per job. */
export const FALLBACK_BG_TILE = 400;

type OptionField = keyof JobOptionsInput;
const OPTION_SCHEMAS = JobOptionsInputSchema.properties as Record<OptionField, TSchema>;

/** Field names accepted in a submission besides the image part. */
export const OPTION_FIELDS: readonly string[] = ['engine', ...Object.keys(OPTION_SCHEMAS)];

function invalid(field: string, allowed: string, received: string): never {
  const shown = received.length > 60 ? `${received.slice(0, 60)}…` : received;
  throw new ApiError('INVALID_OPTION', `Field "${field}" must be ${allowed}; received ${JSON.stringify(shown)}`, {
    extensions: { field, allowed, received: shown },
  });
}

const TRUE_WORDS = ['true', '1', 'yes', 'on'];
const FALSE_WORDS = ['false', '0', 'no', 'off'];

/** "an integer from 0 to 1024", or the anyOf branches: "0 (no tiling) or an integer from 32 to 1024". */
function describeNumber(s: TSchema, branch = false): string {
  const what = s.type === 'integer' ? 'an integer' : 'a number';
  if (!branch || s.const === undefined) return `${what} from ${s.minimum} to ${s.maximum}`;
  return `${s.const}${s.description ? ` (${s.description})` : ''}`;
}

/**
 * One multipart field (always a string) to its typed value, by its schema: literal unions match the value's text,
 * booleans take yes/no words, numbers are read and checked with TypeBox's Value against the schema (anyOf narrows).
 */
function coerce(field: string, schema: TSchema, raw: string): unknown {
  const text = raw.trim();
  if (KindGuard.IsUnion(schema)) {
    const values = schema.anyOf.map((l) => (l as TLiteral).const);
    const hit = values.find((v) => String(v) === text);
    if (hit === undefined) invalid(field, `one of ${values.map((v) => String(v)).join(', ')}`, raw);
    return hit;
  }
  if (KindGuard.IsBoolean(schema)) {
    const v = text.toLowerCase();
    if (TRUE_WORDS.includes(v)) return true;
    if (FALSE_WORDS.includes(v)) return false;
    return invalid(field, 'a boolean (true or false)', raw);
  }
  if (KindGuard.IsNumber(schema) || KindGuard.IsInteger(schema)) {
    const n = text === '' ? Number.NaN : Number(text);
    if (!Value.Check(schema, n)) invalid(field, describeNumber(schema), raw);
    const branches = (schema.anyOf ?? []) as TSchema[];
    if (branches.length > 0 && !branches.some((b) => Value.Check(b, n))) {
      invalid(
        field,
        branches.map((b) => (b.const !== undefined ? describeNumber(b, true) : describeNumber({ ...schema, ...b }))).join(' or '),
        raw,
      );
    }
    return n;
  }
  throw new TypeError(`options schema: field ${field} has a kind the form parser does not know`);
}

/** Optional numbers without a default are chosen per job: `auto` (or leaving the field out) leaves them unset. */
const choosable = (s: TSchema): boolean =>
  KindGuard.IsOptional(s) && s.default === undefined && (KindGuard.IsNumber(s) || KindGuard.IsInteger(s));

/**
 * Parse submission fields (strings, as multipart delivers them) into options with defaults applied, field by field
 * from JobOptionsInputSchema. `format` stays `auto` here; `resolveFormat` settles it once the input format is known.
 * Throws ApiError INVALID_OPTION naming the field, what is allowed and what arrived.
 */
export function parseJobOptions(fields: Readonly<Record<string, string | undefined>>): { engine?: string; options: JobOptionsInput } {
  for (const key of Object.keys(fields)) {
    if (!OPTION_FIELDS.includes(key)) invalid(key, `one of the known fields (${OPTION_FIELDS.join(', ')})`, key);
  }
  const options: Record<string, unknown> = { ...DEFAULT_OPTIONS };
  for (const [field, schema] of Object.entries(OPTION_SCHEMAS)) {
    const raw = fields[field];
    if (raw === undefined) continue;
    if (choosable(schema) && raw.trim().toLowerCase() === 'auto') continue;
    options[field] = coerce(field, schema, raw);
  }
  let engine: string | undefined;
  if (fields.engine !== undefined) {
    engine = fields.engine.trim();
    if (!/^[a-z0-9][a-z0-9._-]{0,63}$/i.test(engine)) invalid('engine', 'an engine name (letters, digits, . _ -)', fields.engine);
  }
  return { engine, options: options as JobOptionsInput };
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
  if (
    b.length >= 8 &&
    b[0] === 0x89 &&
    b[1] === 0x50 &&
    b[2] === 0x4e &&
    b[3] === 0x47 &&
    b[4] === 0x0d &&
    b[5] === 0x0a &&
    b[6] === 0x1a &&
    b[7] === 0x0a
  )
    return 'png';
  if (
    b.length >= 12 &&
    b[0] === 0x52 &&
    b[1] === 0x49 &&
    b[2] === 0x46 &&
    b[3] === 0x46 &&
    b[8] === 0x57 &&
    b[9] === 0x45 &&
    b[10] === 0x42 &&
    b[11] === 0x50
  )
    return 'webp';
  if (b.length >= 2 && b[0] === 0x42 && b[1] === 0x4d) return 'bmp';
  if (
    b.length >= 4 &&
    ((b[0] === 0x49 && b[1] === 0x49 && b[2] === 0x2a && b[3] === 0x00) ||
      (b[0] === 0x4d && b[1] === 0x4d && b[2] === 0x00 && b[3] === 0x2a))
  )
    return 'tiff';
  return undefined;
}
