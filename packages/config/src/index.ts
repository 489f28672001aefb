import { readFileSync } from 'node:fs';
import { Value } from '@sinclair/typebox/value';
import { Type, type StaticDecode, type TObject, type TSchema } from '@sinclair/typebox';

/**
 * One typed config per app: defaults (from the schema) < config file (JSON) < environment < explicit overrides.
 * Validated once, frozen. Every error names the setting, where it came from, what is allowed and what arrived.
 */
export class ConfigError extends Error {
  readonly problems: string[];
  constructor(app: string, problems: string[]) {
    super(`${app}: invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

export interface LoadOptions<T extends TObject> {
  /** App name, used in messages. */
  app: string;
  schema: T;
  /** Config key → environment variable name. Keys without an entry are file-only. */
  envNames: Partial<Record<keyof StaticDecode<T>, string>>;
  env?: Record<string, string | undefined>;
  /** Path of a JSON config file; read when given. */
  file?: string;
  /** Highest precedence, for tests and embedding (`opts.x ?? default`). */
  overrides?: Partial<StaticDecode<T>>;
}

function describe(schema: TSchema): string {
  const s = schema as Record<string, unknown> & { anyOf?: TSchema[] };
  if (s[UNIT] === 'bytes') return `a size such as 512MiB, 4GiB or a number of bytes${s.minimum ? ` (at least ${String(s.minimum)})` : ''}`;
  if (s[UNIT] === 'duration')
    return `a duration such as 250ms, 30s, 5m or a number of milliseconds${s.minimum ? ` (at least ${String(s.minimum)} ms)` : ''}`;
  if (Array.isArray(s.anyOf) && s.anyOf.every((x) => 'const' in x))
    return `one of ${s.anyOf.map((x) => JSON.stringify((x as unknown as { const: unknown }).const)).join(', ')}`;
  const type = s.type as string | undefined;
  const range = [s.minimum !== undefined ? `>= ${String(s.minimum)}` : '', s.maximum !== undefined ? `<= ${String(s.maximum)}` : '']
    .filter(Boolean)
    .join(' and ');
  if (type === 'integer') return `an integer${range ? ` ${range}` : ''}`;
  if (type === 'number') return `a number${range ? ` ${range}` : ''}`;
  if (type === 'boolean') return 'true or false';
  if (type === 'string') return s.minLength ? 'a non-empty string' : 'a string';
  if (type === 'array') return 'a JSON array';
  if (type === 'object') return 'a JSON object';
  return 'a valid value';
}

function fromEnv(raw: string, schema: TSchema): unknown {
  const type = (schema as { type?: string }).type;
  if (type === 'integer' || type === 'number') return raw.trim() === '' ? raw : Number(raw);
  if (type === 'boolean') {
    const v = raw.trim().toLowerCase();
    if (['1', 'true', 'yes', 'on'].includes(v)) return true;
    if (['0', 'false', 'no', 'off'].includes(v)) return false;
    return raw;
  }
  if (type === 'array' && !raw.trim().startsWith('[')) {
    // A list of names may be written plainly: KNOWN_ENGINES=classic,esrgan
    return raw
      .split(',')
      .map((x) => x.trim())
      .filter(Boolean);
  }
  if (type === 'array' || type === 'object') {
    try {
      return JSON.parse(raw);
    } catch {
      return raw;
    }
  }
  const anyOf = (schema as { anyOf?: Array<{ const?: unknown }> }).anyOf;
  if (anyOf?.some((x) => typeof x.const === 'number')) return Number(raw);
  return raw;
}

export function loadConfig<T extends TObject>(opts: LoadOptions<T>): Readonly<StaticDecode<T>> {
  const { schema, app } = opts;
  const env = opts.env ?? process.env;
  const problems: string[] = [];
  const origin: Record<string, string> = {};
  /** What arrived, as written, for messages (a failed number conversion would otherwise show as null). */
  const rawValues: Record<string, string> = {};
  let fileValues: Record<string, unknown> = {};
  if (opts.file) {
    try {
      const parsed: unknown = JSON.parse(readFileSync(opts.file, 'utf8'));
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('the file must hold a JSON object');
      fileValues = parsed as Record<string, unknown>;
    } catch (err) {
      throw new ConfigError(app, [`config file ${opts.file}: ${(err as Error).message}`]);
    }
    for (const key of Object.keys(fileValues)) {
      if (!(key in schema.properties))
        problems.push(`config file ${opts.file}: unknown setting "${key}" (known: ${Object.keys(schema.properties).join(', ')})`);
      origin[key] = `"${key}" in ${opts.file}`;
    }
  }
  const values: Record<string, unknown> = { ...fileValues };
  for (const [key, envName] of Object.entries(opts.envNames) as Array<[string, string]>) {
    const raw = env[envName];
    if (raw === undefined || raw === '') continue;
    values[key] = fromEnv(raw, schema.properties[key] as TSchema);
    origin[key] = `${envName} (environment)`;
    rawValues[key] = raw;
  }
  for (const [key, v] of Object.entries(opts.overrides ?? {})) {
    if (v === undefined) continue;
    values[key] = v;
    origin[key] = `"${key}" (passed in)`;
  }
  const withDefaults = Value.Default(schema, Value.Clone(values)) as Record<string, unknown>;
  for (const [key, sub] of Object.entries(schema.properties) as Array<[string, TSchema]>) {
    const v = withDefaults[key];
    if (v === undefined) {
      if ((schema.required ?? []).includes(key))
        problems.push(`setting ${origin[key] ?? envLabel(opts, key)} is required: ${describe(sub)}`);
      continue;
    }
    if (!Value.Check(sub, v)) {
      const first = [...Value.Errors(sub, v)][0];
      const where = first?.path ? ` at ${first.path}` : '';
      problems.push(
        `setting ${origin[key] ?? envLabel(opts, key)} must be ${describe(first?.path ? first.schema : sub)}${where ? ` (${first?.message}${where})` : ''}; received ${JSON.stringify(rawValues[key] ?? v)}`,
      );
      continue;
    }
    // Sizes and durations are parsed here, once: the app sees numbers (bytes, milliseconds).
    try {
      withDefaults[key] = Value.Decode(sub, v);
    } catch (err) {
      const inner = (err as { error?: unknown }).error;
      const path = (err as { path?: string }).path;
      const what = inner instanceof Error ? inner.message : (err as Error).message;
      problems.push(
        `setting ${origin[key] ?? envLabel(opts, key)}${path ? ` at ${path}` : ''} ${what}; received ${JSON.stringify(rawValues[key] ?? v)}`,
      );
    }
  }
  if (problems.length) throw new ConfigError(app, problems);
  return deepFreeze(withDefaults) as Readonly<StaticDecode<T>>;
}

function envLabel<T extends TObject>(opts: LoadOptions<T>, key: string): string {
  const e = (opts.envNames as Record<string, string | undefined>)[key];
  return e ? `${e} (environment)` : `"${key}"`;
}

function deepFreeze<T>(v: T): T {
  if (v && typeof v === 'object') {
    for (const x of Object.values(v as Record<string, unknown>)) deepFreeze(x);
    Object.freeze(v);
  }
  return v;
}

// JSON Schema patterns carry no flags, so case is spelled out; the same text is the parser's regular expression.
const BYTES_PATTERN = '^\\s*(\\d+(?:\\.\\d+)?)\\s*([kKmMgGtT]?)([iI]?[bB]?)\\s*$';
const DURATION_PATTERN = '^\\s*(\\d+(?:\\.\\d+)?)\\s*(ms|MS|s|S|m|M|h|H)?\\s*$';
const BYTES_RE = new RegExp(BYTES_PATTERN);
const DURATION_RE = new RegExp(DURATION_PATTERN);
/** Schema annotation read by describe(): which unit a Bytes/Duration setting is written in. */
const UNIT = 'x-unit';

/** Parse sizes like "8GiB", "512MiB", "2G", "1048576". */
export function parseBytes(input: string | number): number {
  if (typeof input === 'number') return input;
  const m = BYTES_RE.exec(input);
  if (!m) throw new Error(`not a size: ${JSON.stringify(input)} (use e.g. 512MiB, 8GiB or a number of bytes)`);
  const unit = { '': 0, k: 1, m: 2, g: 3, t: 4 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  return Math.round(Number(m[1]) * 1024 ** unit);
}

/** Parse durations like "250ms", "30s", "5m", "1h"; a plain number is milliseconds. */
export function parseDuration(input: string | number): number {
  if (typeof input === 'number') return input;
  const m = DURATION_RE.exec(input);
  if (!m) throw new Error(`not a duration: ${JSON.stringify(input)} (use e.g. 250ms, 30s, 5m or a number of milliseconds)`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 'ms').toLowerCase() as 'ms' | 's' | 'm' | 'h'];
  return Math.round(Number(m[1]) * unit);
}

interface UnitOptions {
  default?: number;
  minimum?: number;
  maximum?: number;
  description?: string;
}

function unitSetting(kind: 'bytes' | 'duration', re: RegExp, parse: (v: string | number) => number, unitName: string, opts: UnitOptions) {
  const { minimum = 0, maximum, ...rest } = opts;
  const bounds = { minimum, ...(maximum !== undefined ? { maximum } : {}) };
  // Written either as a plain number (bytes / milliseconds, as before) or as text with a unit; checked by the
  // schema (so a bad value is named with the setting), then turned into a number by Value.Decode in loadConfig.
  const input = Type.Union([Type.Integer(bounds), Type.String({ pattern: re.source })], { ...rest, ...bounds, [UNIT]: kind });
  return Type.Transform(input)
    .Decode((v): number => {
      const n = parse(v);
      if (n < minimum) throw new Error(`must be at least ${minimum} ${unitName} (${kind === 'bytes' ? 'e.g. 512MiB' : 'e.g. 250ms'})`);
      if (maximum !== undefined && n > maximum) throw new Error(`must be at most ${maximum} ${unitName}`);
      return n;
    })
    .Encode((n) => n);
}

/** A byte-size setting: `4GiB`, `512MiB`, `2G` or a plain number of bytes; the app sees a number of bytes. */
export function Bytes(opts: UnitOptions = {}) {
  return unitSetting('bytes', BYTES_RE, parseBytes, 'bytes', opts);
}

/** A duration setting: `250ms`, `30s`, `5m`, `1h` or a plain number of milliseconds; the app sees milliseconds. */
export function Duration(opts: UnitOptions = {}) {
  return unitSetting('duration', DURATION_RE, parseDuration, 'ms', opts);
}

/** The log level setting every app has (pino's levels). */
export const LogLevelSchema = Type.Union(
  [
    Type.Literal('fatal'),
    Type.Literal('error'),
    Type.Literal('warn'),
    Type.Literal('info'),
    Type.Literal('debug'),
    Type.Literal('trace'),
    Type.Literal('silent'),
  ],
  { default: 'info' },
);

export { Type };
export { createLogger, LogFormatSchema, type LogFormat } from './logger.js';
export type { Static, StaticDecode } from '@sinclair/typebox';
