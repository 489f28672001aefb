import type { JobView } from '@photoenhance/contracts';

/**
 * Job progress on stderr: one rewritten line on a terminal, otherwise a line per status change or 10 % step,
 * so logs and test output stay readable.
 */
export function createProgress(id: string, quiet: boolean): { update(view: JobView): void; end(): void } {
  const tty = process.stderr.isTTY === true;
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
        process.stderr.write(`\r${line.padEnd(lastLine.length)}`);
        open = true;
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
