import type { Command } from 'commander';

/** The job options every submitting command takes, as commander gives them (strings; camel-cased names = API fields). */
export interface JobOptionFlags {
  scale?: string;
  engine?: string;
  format?: string;
  quality?: string;
  version?: string;
  weight?: string;
  bgTile?: string;
  bgUpsampler?: string;
  onlyCenterFace?: boolean;
  aligned?: boolean;
  priority?: string;
}

/** Declare the job-option flags on a command, the same words for `enhance` and `batch`. */
export function jobOptionFlags(cmd: Command): Command {
  return cmd
    .option('--scale <n>', 'upscale factor: 1, 2 or 4 (default 2)')
    .option('--engine <name>', 'engine to use (GET /v1/engines lists them; default: the gateway\'s default)')
    .option('--format <format>', 'output format: auto, png, jpeg or webp (default auto)')
    .option('--quality <q>', 'jpeg/webp quality 1-100 (default 92)')
    .option('--version <v>', 'GFPGAN model version: 1, 1.2, 1.3, 1.4 or RestoreFormer')
    .option('--weight <w>', 'blend weight of restored faces, 0-1 (default 0.5)')
    .option('--bg-tile <px>', 'background tile size: 0 (no tiling) or 32-1024 (default 400)')
    .option('--bg-upsampler <name>', 'background upsampler: realesrgan or none')
    .option('--only-center-face', 'restore only the face nearest the centre')
    .option('--aligned', 'the input is an aligned 512x512 face crop')
    .option('--priority <p>', 'queue priority: high, normal or low');
}
