import { Option, type Command } from 'commander';
import { withDefault } from './specs/common.js';

/** The job options every submitting command takes, as commander gives them (strings; camel-cased names = API fields but modelVersion). */
export interface JobOptionFlags {
  scale?: string;
  engine?: string;
  format?: string;
  quality?: string;
  /** The API's `version` field (GFPGAN model version); `--version` is the program's own version. */
  modelVersion?: string;
  /** Set only when someone still types the old `--version <v>` after a command: refused with the new name. */
  version?: string;
  weight?: string;
  bgTile?: string;
  bgUpsampler?: string;
  onlyCenterFace?: boolean;
  aligned?: boolean;
  priority?: string;
}

/** Declare the job-option flags on a command, the same words for `enhance` and `batch`. Defaults are the gateway's. */
export function jobOptionFlags(cmd: Command): Command {
  return (
    cmd
      .option('--scale <n>', withDefault('upscale factor: 1, 2 or 4', 2))
      .option('--engine <name>', withDefault('engine to use (GET /v1/engines lists them)', "the gateway's default"))
      .option('--format <format>', withDefault('output format: auto, png, jpeg or webp (auto keeps png/jpeg/webp)', 'auto'))
      .option('--quality <q>', withDefault('jpeg/webp quality 1-100', 92))
      .option(
        '--model-version <v>',
        withDefault('GFPGAN model version: 1, 1.2, 1.3, 1.4 or RestoreFormer (the API field `version`)', '1.4'),
      )
      .option('--weight <w>', withDefault('blend weight of restored faces, 0-1', 0.5))
      .option(
        '--bg-tile <px>',
        withDefault(
          'background tile size: 0 (no tiling), 32-1024, or auto',
          'auto: the largest that fits the GPU for the photo, 400 without a GPU',
        ),
      )
      .option('--bg-upsampler <name>', withDefault('background upsampler: realesrgan or none', 'realesrgan'))
      .option('--only-center-face', 'restore only the face nearest the centre')
      .option('--aligned', 'the input is an aligned 512x512 face crop')
      .option('--priority <p>', withDefault('queue priority: high, normal or low', 'normal'))
      // The old spelling, kept out of --help, so it gets a message naming the new one rather than "unknown option".
      .addOption(new Option('--version <v>').hideHelp())
  );
}
