import type { Command } from 'commander';
import { examples, withDefault } from './common.js';

export function registerDoctor(program: Command): void {
  const cmd = program
    .command('doctor')
    .description('Check this host: Node, Redis, sharp and every configured engine (Python engines run their own --check).')
    .option(
      '--config <file>',
      withDefault('worker config with the engine profiles (env WORKER_CONFIG)', 'the built-in classic engine only'),
    )
    .option('--json', 'print the results as JSON')
    .action(async (flags: { config?: string; json?: boolean }) => {
      const { doctor } = await import('../commands/doctor.js');
      process.exitCode = await doctor(flags);
    });
  examples(cmd, [
    ['photoenhance doctor', 'what is installed, what is missing'],
    ['photoenhance doctor --config engines/examples/imagemagick.json', 'also check a one-shot engine'],
  ]);
}
