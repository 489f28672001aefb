import type { JobView } from '@photoenhance/contracts';
import { paint } from './colour.js';

/**
 * Job progress on stderr: one rewritten line on a terminal, otherwise a line per status change or 10 % step,
 * so logs and test output stay readable.
 */
export function createProgress(id: string, quiet: boolean): { update(view: JobView): void; end(): void } {
  const tty = process.stderr.isTTY === true;
  const c = paint(process.stderr);
  let lastLine = '';
  let lastStep = -1;
  let lastStatus = '';
  let open = false;
  return {
    update(view) {
      if (quiet) return;
      const pct = Math.round(Math.max(0, Math.min(1, view.progress)) * 100);
      const line = `job ${id}: ${view.status}${view.status === 'active' || view.status === 'completed' ? ` ${pct}%` : ''}`;
      if (tty) {
        if (line === lastLine) return;
        // On a terminal: a bar, the state word coloured; the padding is computed on the plain text.
        const width = 20;
        const filled = Math.round((pct / 100) * width);
        const bar = `[${c('green', '#'.repeat(filled))}${c('grey', '-'.repeat(width - filled))}]`;
        const plain = `[${'#'.repeat(width)}] ${line}`;
        process.stderr.write(
          `\r${bar} job ${id}: ${c.state(view.status)}${line.slice(`job ${id}: ${view.status}`.length)}${' '.repeat(Math.max(0, lastLine.length - plain.length))}`,
        );
        lastLine = plain;
        lastStatus = view.status;
        open = true;
        return;
      } else {
        const step = Math.floor(pct / 10);
        if (view.status === lastStatus && step === lastStep) return;
        lastStep = step;
        process.stderr.write(`${line}\n`);
      }
      lastStatus = view.status;
      lastLine = line;
    },
    end() {
      if (open) process.stderr.write('\n');
      open = false;
    },
  };
}
