import type { Command } from 'commander';
import { connectionFlags, examples } from './common.js';

export interface StatusFlags {
  json?: boolean;
  url?: string;
  apiKey?: string;
}

export function registerStatus(program: Command): void {
  const cmd = program
    .command('status')
    .description('Show a job (status, progress, options, result or error) or a batch (counts, progress, failed items).')
    .argument('<id>', 'a job id (j_…) or a batch id (b_…) from a 202 answer')
    .option('--json', 'print the raw JSON (JobView or BatchView)');
  connectionFlags(cmd).action(async (id: string, flags: StatusFlags) => {
    const { status } = await import('../commands/status.js');
    process.exitCode = await status(id, flags);
  });
  examples(cmd, [
    ['photoenhance status j_0123456789abcdefghij', 'one job, human readable'],
    ['photoenhance status b_0123456789abcdefghij --json', 'a batch as JSON'],
  ]);
}
