import type { BatchReport } from './tally.js';
import { clock } from './progress.js';

/** At most this many paths are listed under each failure code and skip reason. */
const LIST = 5;

/** The human summary printed at the end of `batch` (stdout). */
export function formatSummary(r: BatchReport): string {
  const rows: Array<[string, string]> = [];
  const earlier = [r.alreadyDone ? `${r.alreadyDone} by an earlier run` : '', r.reattached ? `${r.reattached} re-attached` : '']
    .filter(Boolean)
    .join(', ');
  rows.push(['done', `${r.done} of ${r.photos}${earlier ? ` (${earlier})` : ''}`]);
  rows.push(['failed', String(r.failed.length)]);
  const byCode = new Map<string, string[]>();
  for (const f of r.failed) byCode.set(f.code, [...(byCode.get(f.code) ?? []), f.rel]);
  for (const [code, rels] of [...byCode].sort((a, b) => b[1].length - a[1].length)) {
    rows.push(['', `${code} ×${rels.length}: ${list(rels)}`]);
  }
  rows.push(['skipped', String(r.skipped.length)]);
  const byReason = new Map<string, string[]>();
  for (const s of r.skipped) byReason.set(s.reason, [...(byReason.get(s.reason) ?? []), s.rel]);
  for (const [reason, rels] of byReason) rows.push(['', `${reason}: ${list(rels)}`]);
  if (r.unfinished) rows.push(['unfinished', `${r.unfinished} (interrupted; run the same command again to resume)`]);
  const busy = Object.entries(r.busy.byCode)
    .map(([c, n]) => `${c} ${n}`)
    .join(', ');
  rows.push(['submitted', `${r.submitted} this run${r.resubmitted ? ` (${r.resubmitted} resubmitted: job expired or unknown)` : ''}`]);
  rows.push([
    'busy',
    r.busy.total
      ? `${r.busy.total} answers (${busy}); paused ${(r.window.pausedMs / 1000).toFixed(1)} s by Retry-After; window ${r.window.min}-${r.window.maxSeen}, now ${r.window.final} of max ${r.window.max}`
      : `none; window up to ${r.window.maxSeen} of max ${r.window.max}`,
  ]);
  rows.push(['time', `${clock(r.elapsedMs / 1000)} (${r.photosPerSecond.toFixed(1)} photos/s)`]);
  rows.push(['output', r.out]);
  const w = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(w)}  ${v}\n`).join('');
}

/** `--json`: the whole report (the window trace is kept: the bench reads it). */
export function summaryJson(r: BatchReport, exitCode: number): string {
  return `${JSON.stringify({ ...r, exitCode }, null, 2)}\n`;
}

function list(rels: string[]): string {
  return rels.length <= LIST ? rels.join(', ') : `${rels.slice(0, LIST).join(', ')} and ${rels.length - LIST} more`;
}
