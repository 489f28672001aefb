import { JOB_ID_PATTERN, type JobView } from '@photoenhance/contracts';
import { ApiProblemError, PhotoEnhanceClient } from '@photoenhance/client';
import { EXIT } from '../exit.js';
import { gatewayUrl } from '../paths.js';
import { paint, type Paint } from '../colour.js';
import type { StatusFlags } from '../specs/status.js';

/** `photoenhance status` (declared in specs/status.ts). */
export async function status(id: string, flags: StatusFlags): Promise<number> {
  const client = new PhotoEnhanceClient({ baseUrl: gatewayUrl(flags.url), apiKey: flags.apiKey ?? process.env.PHOTOENHANCE_API_KEY });
  const found = await lookup(client, id);
  const c = paint(process.stdout);
  if (found.kind === 'batch') {
    process.stdout.write(flags.json ? `${JSON.stringify(found.view, null, 2)}\n` : formatBatch(found.view, client.baseUrl, c));
    const st = (found.view as { status?: unknown }).status;
    return st === 'failed' || st === 'partial' ? EXIT.FAILED : EXIT.OK;
  }
  const view = found.view;
  process.stdout.write(flags.json ? `${JSON.stringify(view, null, 2)}\n` : formatJob(view, client.baseUrl, c));
  return view.status === 'failed' ? EXIT.FAILED : EXIT.OK;
}

/** `b_…` is a batch, `j_…` a job; anything else is tried as a job, then as a batch (the job's error wins if neither). */
async function lookup(
  client: PhotoEnhanceClient,
  id: string,
): Promise<{ kind: 'job'; view: JobView } | { kind: 'batch'; view: Record<string, unknown> }> {
  if (id.startsWith('b_')) return { kind: 'batch', view: (await client.getBatch(id)) as unknown as Record<string, unknown> };
  try {
    return { kind: 'job', view: await client.get(id) };
  } catch (err) {
    if (JOB_ID_PATTERN.test(id) || !(err instanceof ApiProblemError) || err.status !== 404) throw err;
    try {
      return { kind: 'batch', view: (await client.getBatch(id)) as unknown as Record<string, unknown> };
    } catch {
      throw err;
    }
  }
}

export function formatJob(v: JobView, base: string, c: Paint = paint({ isTTY: false }, {})): string {
  const rows: Array<[string, string]> = [
    ['job', v.id],
    ['status', `${c.state(v.status)}${v.status === 'active' ? ` ${Math.round(v.progress * 100)}%` : ''}`],
    ['engine', v.engine],
    ['input', `${v.input.name} ${v.input.width}x${v.input.height} ${v.input.format}, ${kib(v.input.bytes)}`],
    [
      'options',
      Object.entries(v.options)
        .map(([k, x]) => `${k}=${String(x)}`)
        .join(' '),
    ],
  ];
  if (v.result)
    rows.push([
      'result',
      `${v.result.width}x${v.result.height} ${v.result.format}, ${kib(v.result.bytes)}  ${absolute(v.result.url, base)}`,
    ]);
  if (v.error) rows.push(['error', `${c('red', v.error.code)}: ${v.error.message}`]);
  rows.push(['attempts', String(v.attempts)], ['created', v.createdAt]);
  if (v.startedAt) rows.push(['started', v.startedAt]);
  if (v.finishedAt) rows.push(['finished', v.finishedAt]);
  if (v.timings)
    rows.push(['timings', `queued ${v.timings.queuedMs} ms${v.timings.runMs !== undefined ? `, ran ${v.timings.runMs} ms` : ''}`]);
  return rows.map(([k, x]) => `${k.padEnd(9)} ${x}\n`).join('');
}

function kib(bytes: number): string {
  return bytes >= 1024 * 1024 ? `${(bytes / 1024 / 1024).toFixed(1)} MiB` : `${Math.max(1, Math.round(bytes / 1024))} KiB`;
}

function absolute(url: string, base: string): string {
  return /^https?:/.test(url) ? url : base + url;
}

/**
 * A batch, human readable. Read defensively: every field is checked before use, so an older or newer gateway's
 * answer still prints what it has.
 */
export function formatBatch(v: Record<string, unknown>, base: string, c: Paint = paint({ isTTY: false }, {})): string {
  const str = (x: unknown): string | undefined => (typeof x === 'string' && x ? x : undefined);
  const num = (x: unknown): number | undefined => (typeof x === 'number' && Number.isFinite(x) ? x : undefined);
  const rows: Array<[string, string]> = [['batch', str(v.id) ?? '?']];
  const progress = num(v.progress);
  const status = str(v.status) ?? 'unknown';
  rows.push([
    'status',
    `${c.state(status)}${progress !== undefined && (status === 'running' || status === 'queued') ? ` ${Math.round(progress * 100)}%` : ''}`,
  ]);
  const counts =
    v.counts && typeof v.counts === 'object'
      ? Object.entries(v.counts as Record<string, unknown>).filter(([, n]) => typeof n === 'number' && n > 0)
      : [];
  const total = num(v.total);
  rows.push(['items', `${total ?? '?'} total${counts.length ? `: ${counts.map(([k, n]) => `${String(n)} ${k}`).join(', ')}` : ''}`]);
  if (str(v.engine)) rows.push(['engine', str(v.engine)!]);
  if (v.options && typeof v.options === 'object')
    rows.push([
      'options',
      Object.entries(v.options as Record<string, unknown>)
        .map(([k, x]) => `${k}=${String(x)}`)
        .join(' '),
    ]);
  for (const k of ['createdAt', 'updatedAt', 'finishedAt', 'canceledAt'] as const) {
    if (str(v[k])) rows.push([k.replace(/At$/, ''), str(v[k])!]);
  }
  const links = v.links && typeof v.links === 'object' ? (v.links as Record<string, unknown>) : {};
  if (str(links.results)) rows.push(['results', absolute(str(links.results)!, base)]);
  const items = Array.isArray(v.items) ? (v.items as Array<Record<string, unknown>>) : [];
  const failed = items.filter((i) => i && (i.status === 'failed' || i.status === 'canceled'));
  let out = rows.map(([k, x]) => `${k.padEnd(9)} ${x}\n`).join('');
  if (failed.length) {
    out += `failed items (${failed.length}):\n`;
    for (const i of failed.slice(0, 20)) {
      const e = i.error && typeof i.error === 'object' ? (i.error as Record<string, unknown>) : {};
      out += `  ${str(i.name) ?? `#${String(i.index ?? '?')}`}  ${str(e.code) ?? String(i.status)}${str(e.message) ? `: ${str(e.message)}` : ''}\n`;
    }
    if (failed.length > 20) out += `  … and ${failed.length - 20} more (--json for all)\n`;
  }
  return out;
}
