import type { Command } from 'commander';
import { jobOptionFlags, type JobOptionFlags } from '../job-flags.js';
import { connectionFlags, examples, withDefault } from './common.js';

export interface EnhanceFlags extends JobOptionFlags {
  output?: string;
  url?: string;
  apiKey?: string;
  retries?: string;
  quiet?: boolean;
  json?: boolean;
}

export function registerEnhance(program: Command): void {
  const cmd = program
    .command('enhance')
    .description('Enhance one photo: upload it, wait for the job, download the result, print its path.')
    .argument('<photo>', 'the photo to enhance (JPEG, PNG, WebP, BMP or TIFF); - reads it from stdin')
    .option(
      '-o, --output <path>',
      withDefault('where to write the result; a directory puts it there; - writes it to stdout', '<stem>_enhanced.<ext> beside the photo'),
    );
  jobOptionFlags(cmd);
  connectionFlags(cmd)
    .option('--retries <n>', withDefault('how many times to retry a busy gateway (503/429), waiting Retry-After each time', 3))
    .option('--json', 'print the finished job (its JobView plus "path") as JSON on stdout instead of the path')
    .option('-q, --quiet', 'no progress on stderr')
    .action(async (photo: string, flags: EnhanceFlags) => {
      const { enhance } = await import('../commands/enhance.js');
      process.exitCode = await enhance(photo, flags);
    });
  examples(cmd, [
    ['photoenhance enhance photo.jpg', 'writes photo_enhanced.jpg beside it'],
    ['photoenhance enhance photo.jpg -o out.png --scale 4', 'a PNG four times the size'],
    ['photoenhance enhance photo.jpg --engine portrait --json', 'the job as JSON, with the output path'],
    ['cat photo.jpg | photoenhance enhance - -o - > better.jpg', 'stdin to stdout'],
  ]);
}
