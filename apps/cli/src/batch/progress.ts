import type { BatchSnapshot } from './tally.js';

export interface ProgressOptions {
  /** Where to draw; process.stderr by default. */
  stream?: NodeJS.WriteStream;
  quiet?: boolean;
  /** Plain lines (not a terminal): one every this many ms. Default 5 000. */
  lineEveryMs?: number;
}

/**
 * Batch progress on stderr. On a terminal: one bar rewritten 5 times a second
 * (`[#####-----] 120/400 30% · 12.5/s · ETA 0:22 · 16 in flight · busy 3`). Elsewhere (logs, CI, tests): a plain line
 * every few seconds, so output stays readable.
 */
export function startProgress(snapshot: () => BatchSnapshot, opts: ProgressOptions = {}): { stop(): void } {
  const stream = opts.stream ?? process.stderr;
  if (opts.quiet) return { stop() {} };
  const tty = stream.isTTY === true;
  let lastLen = 0;
  const draw = (): void => {
    const s = snapshot();
    if (tty) {
      const line = barLine(s, Math.max(10, Math.min(30, (stream.columns ?? 80) - 70)));
      stream.write(`\r${line.padEnd(lastLen)}`);
      lastLen = line.length;
    } else {
      stream.write(`batch: ${plainLine(s)}\n`);
    }
  };
  const timer = setInterval(draw, tty ? 200 : (opts.lineEveryMs ?? 5000));
  timer.unref();
  return {
    stop() {
      clearInterval(timer);
      if (tty && lastLen > 0) {
        draw();
        stream.write('\n');
      }
    },
  };
}

export function barLine(s: BatchSnapshot, width: number): string {
  const finished = s.done + s.failed;
  const frac = s.total > 0 ? finished / s.total : 1;
  const filled = Math.round(frac * width);
  const bar = `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}]`;
  return `${bar} ${plainLine(s)}`;
}

export function plainLine(s: BatchSnapshot): string {
  const finished = s.done + s.failed;
  const pct = s.total > 0 ? Math.floor((finished / s.total) * 100) : 100;
  const parts = [`${finished}/${s.total} ${pct}%`];
  if (s.failed) parts.push(`${s.failed} failed`);
  parts.push(`${s.rate.toFixed(1)}/s`, `ETA ${eta(s)}`, `${s.outstanding} in flight (window ${s.window})`);
  if (s.busy) parts.push(`busy ${s.busy}`);
  if (s.pausedMs > 0) parts.push(`paused ${(s.pausedMs / 1000).toFixed(1)} s`);
  return parts.join(' · ');
}

function eta(s: BatchSnapshot): string {
  const left = s.total - s.done - s.failed;
  if (left <= 0) return '0:00';
  if (s.rate <= 0) return '--:--';
  return clock(left / s.rate);
}

export function clock(seconds: number): string {
  const t = Math.round(seconds);
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const sec = String(t % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}
