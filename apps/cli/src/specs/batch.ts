import type { Command } from 'commander';
import { jobOptionFlags, type JobOptionFlags } from '../job-flags.js';
import { connectionFlags, examples, withDefault } from './common.js';

export interface BatchFlags extends JobOptionFlags {
  out: string;
  concurrencyMax?: string;
  json?: boolean;
  url?: string;
  apiKey?: string;
  quiet?: boolean;
}

export function registerBatch(program: Command): void {
  const cmd = program
    .command('batch')
    .description(
      'Enhance every photo of a folder (recursively) or glob into --out, keeping relative paths. Resumable: run the same ' +
        'command again after a crash or Ctrl-C to finish the rest (a manifest in --out records each photo).',
    )
    .argument('<source>', 'a folder (walked recursively), one photo, or a glob such as "shots/**/*.jpg" (quote it)')
    .requiredOption('--out <folder>', 'output folder: <rel dir>/<stem>_enhanced.<ext> for each photo, plus the manifest');
  jobOptionFlags(cmd)
    .option(
      '--concurrency-max <n>',
      withDefault('most jobs of this batch outstanding at once; the window adapts below it (a 503/429 shrinks it to 0.7)', 64),
    )
    .option('--json', 'print the summary as JSON on stdout');
  connectionFlags(cmd)
    .option('-q, --quiet', 'no progress on stderr')
    .action(async (source: string, flags: BatchFlags) => {
      const { batch } = await import('../commands/batch.js');
      process.exitCode = await batch(source, flags);
    });
  examples(cmd, [
    ['photoenhance batch ~/photos --out ~/enhanced', 'a whole folder, recursively'],
    ['photoenhance batch "shots/**/*.jpg" --out big --scale 4', 'a glob (quoted)'],
    ['photoenhance batch ~/photos --out ~/enhanced', 'the same command again resumes after Ctrl-C'],
  ]);
}
