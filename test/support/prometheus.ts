/**
 * A small, strict parser for the Prometheus text exposition format (version 0.0.4): every sample must belong to a
 * family declared with # TYPE, names and labels must be well formed, values must be numbers. Throws on anything else,
 * so a malformed /metrics fails the test that scrapes it.
 */
export interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface PromFamily {
  name: string;
  type: 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';
  help: string;
  samples: PromSample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const SUFFIXES: Record<string, string[]> = {
  histogram: ['_bucket', '_sum', '_count'],
  summary: ['', '_sum', '_count'],
  counter: [''],
  gauge: [''],
  untyped: [''],
};

function parseValue(raw: string, line: string): number {
  // As Go's strconv.ParseFloat (what Prometheus uses): Inf and NaN in any case (prom-client writes "Nan").
  const lower = raw.toLowerCase();
  if (lower === '+inf' || lower === 'inf') return Infinity;
  if (lower === '-inf') return -Infinity;
  if (lower === 'nan') return NaN;
  const v = Number(raw);
  if (raw === '' || Number.isNaN(v)) throw new Error(`bad sample value in: ${line}`);
  return v;
}

function parseLabels(body: string, line: string): Record<string, string> {
  const labels: Record<string, string> = {};
  let i = 0;
  while (i < body.length) {
    const eq = body.indexOf('=', i);
    if (eq < 0) throw new Error(`bad labels in: ${line}`);
    const key = body.slice(i, eq).trim();
    if (!LABEL.test(key)) throw new Error(`bad label name ${JSON.stringify(key)} in: ${line}`);
    if (body[eq + 1] !== '"') throw new Error(`unquoted label value in: ${line}`);
    let j = eq + 2;
    let value = '';
    for (; j < body.length && body[j] !== '"'; j++) {
      if (body[j] === '\\') {
        const n = body[++j];
        value += n === 'n' ? '\n' : n;
      } else value += body[j];
    }
    if (body[j] !== '"') throw new Error(`unterminated label value in: ${line}`);
    if (key in labels) throw new Error(`repeated label ${key} in: ${line}`);
    labels[key] = value;
    i = j + 1;
    if (body[i] === ',') i++;
    else if (i < body.length) throw new Error(`bad label separator in: ${line}`);
  }
  return labels;
}

export function parsePrometheusText(text: string): Map<string, PromFamily> {
  const families = new Map<string, PromFamily>();
  const helps = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (!m) continue; // plain comment
      const [, kind, name, rest] = m as unknown as [string, string, string, string];
      if (!NAME.test(name)) throw new Error(`bad metric name in: ${line}`);
      if (kind === 'HELP') helps.set(name, rest);
      else {
        if (!['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(rest)) throw new Error(`bad TYPE in: ${line}`);
        if (families.has(name)) throw new Error(`TYPE declared twice for ${name}`);
        families.set(name, { name, type: rest as PromFamily['type'], help: helps.get(name) ?? '', samples: [] });
      }
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: (-?\d+))?$/.exec(line);
    if (!m) throw new Error(`bad sample line: ${line}`);
    const [, name, labelBody, raw] = m as unknown as [string, string, string | undefined, string];
    const family = [...families.values()].find((f) => SUFFIXES[f.type]!.some((s) => f.name + s === name));
    if (!family) throw new Error(`sample ${name} has no # TYPE`);
    family.samples.push({ name, labels: labelBody ? parseLabels(labelBody, line) : {}, value: parseValue(raw, line) });
  }
  for (const f of families.values()) {
    if (f.type === 'counter' && !f.name.endsWith('_total')) throw new Error(`counter ${f.name} must end in _total`);
    if (f.type === 'histogram') checkHistogram(f);
  }
  return families;
}

function checkHistogram(f: PromFamily): void {
  const series = new Map<string, PromSample[]>();
  for (const s of f.samples.filter((x) => x.name === `${f.name}_bucket`)) {
    const { le, ...rest } = s.labels;
    if (le === undefined) throw new Error(`${f.name}_bucket without le`);
    const k = JSON.stringify(rest);
    series.set(k, [...(series.get(k) ?? []), s]);
  }
  for (const [k, buckets] of series) {
    let prev = -1;
    for (const b of buckets) {
      if (b.value < prev) throw new Error(`${f.name} buckets not cumulative for ${k}`);
      prev = b.value;
    }
    if (buckets.at(-1)?.labels.le !== '+Inf') throw new Error(`${f.name} lacks the +Inf bucket for ${k}`);
    const count = f.samples.find((s) => s.name === `${f.name}_count` && JSON.stringify(s.labels) === k);
    if (count?.value !== buckets.at(-1)!.value) throw new Error(`${f.name}_count differs from the +Inf bucket for ${k}`);
  }
}

/** The value of one sample (labels must match exactly those given, others ignored); undefined when absent. */
export function sampleValue(
  families: Map<string, PromFamily>,
  family: string,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  const f = families.get(family);
  return f?.samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}

export function sumValues(families: Map<string, PromFamily>, family: string, name: string, labels: Record<string, string> = {}): number {
  const f = families.get(family);
  return (f?.samples ?? [])
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((n, s) => n + s.value, 0);
}
