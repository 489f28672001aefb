import type { Command } from 'commander';
import { connectionFlags, examples, withDefault } from './common.js';

export interface WatchFlags {
  once?: boolean;
  interval?: string;
  json?: boolean;
  url?: string;
  apiKey?: string;
}

export function registerWatch(program: Command): void {
  const cmd = program
    .command('watch')
    .description('Live queue summary: hosts, admission, engine processes and queue counts, refreshed until Ctrl-C (which exits 0).')
    .option('--once', 'print one snapshot and exit')
    .option('--interval <ms>', withDefault('refresh period in milliseconds (at least 100)', 1000))
    .option('--json', 'print snapshots as JSON (one object a line)');
  connectionFlags(cmd).action(async (flags: WatchFlags) => {
    const { watch } = await import('../commands/watch.js');
    process.exitCode = await watch(flags);
  });
  examples(cmd, [
    ['photoenhance watch', 'redraw every second until Ctrl-C'],
    ['photoenhance watch --once --json | jq .hosts', 'one snapshot for a script'],
  ]);
}
