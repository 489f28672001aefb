import { randomUUID } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { basename, dirname, extname, join, resolve } from 'node:path';
import type { Command } from 'commander';
import { ApiError, FORMAT_EXTENSIONS, parseJobOptions, type JobAccepted, type JobView } from '@photoenhance/contracts';
import { ApiProblemError, PhotoEnhanceClient, type SubmitOptions } from '@photoenhance/client';
import { CliError, EXIT, jobErrorLine } from '../exit.js';
import { gatewayUrl } from '../paths.js';
import { createProgress } from '../progress.js';
import { jobOptionFlags, type JobOptionFlags } from '../job-flags.js';

interface EnhanceFlags extends JobOptionFlags {
  output?: string;
  url?: string;
  apiKey?: string;
  retries: string;
  quiet?: boolean;
}

/** Flags that map one-to-one to API fields (commander camel-cases --bg-tile to bgTile, the API's name). */
const OPTION_FLAGS = ['scale', 'engine', 'format', 'quality', 'version', 'weight', 'bgTile', 'bgUpsampler', 'priority'] as const;

export function registerEnhance(program: Command): void {
  const cmd = program
    .command('enhance')
    .description('Enhance one photo: upload it, wait for the job, download the result, print its path.')
    .argument('<photo>', 'the photo to enhance (JPEG, PNG, WebP, BMP or TIFF)')
    .option('-o, --output <path>', 'where to write the result; a directory puts it there (default: <stem>_enhanced.<ext> beside the photo)');
  jobOptionFlags(cmd)
    .option('--url <url>', 'gateway URL (env PHOTOENHANCE_URL, default http://127.0.0.1:8080)')
    .option('--api-key <key>', 'API key (env PHOTOENHANCE_API_KEY)')
    .option('--retries <n>', 'how many times to retry a busy gateway (503/429), waiting Retry-After each time', '3')
    .option('-q, --quiet', 'no progress on stderr')
    .action(async (photo: string, flags: EnhanceFlags) => {
      process.exitCode = await enhance(photo, flags);
    });
}

async function enhance(photo: string, flags: EnhanceFlags): Promise<number> {
  const input = resolve(photo);
  await checkReadableFile(input, photo);
  const options = validateOptions({ ...flags, format: formatFor(flags.output, flags.format) });
  const retries = Number(flags.retries);
  if (!Number.isInteger(retries) || retries < 0) throw new CliError(EXIT.USAGE, `error: --retries must be a whole number >= 0; received ${JSON.stringify(flags.retries)}`);

  const client = new PhotoEnhanceClient({ baseUrl: gatewayUrl(flags.url), apiKey: flags.apiKey ?? process.env.PHOTOENHANCE_API_KEY });
  const accepted = await submitWithRetry(client, input, options, retries, flags.quiet === true);
  const progress = createProgress(accepted.id, flags.quiet === true);

  // Ctrl-C while waiting cancels the job on the gateway rather than leaving it to run for nobody.
  const abort = new AbortController();
  const onSigint = (): void => abort.abort(new Error('interrupted'));
  process.once('SIGINT', onSigint);
  let view: JobView;
  try {
    view = await client.waitFor(accepted.id, { signal: abort.signal, onProgress: (v) => progress.update(v) });
  } catch (err) {
    if (!abort.signal.aborted) throw err;
    progress.end();
    await client.cancel(accepted.id).catch(() => undefined);
    process.stderr.write(`interrupted: canceled job ${accepted.id}\n`);
    return EXIT.INTERRUPTED;
  } finally {
    process.removeListener('SIGINT', onSigint);
  }
  progress.end();

  if (view.status !== 'completed' || !view.result) {
    const e = view.error ?? { code: view.status === 'canceled' ? 'JOB_CANCELED' : 'ENGINE_FAILED', message: `job ${view.id} ended ${view.status}` };
    throw new CliError(EXIT.FAILED, jobErrorLine(e.code, e.message));
  }
  const defaultName = `${basename(input, extname(input))}_enhanced.${FORMAT_EXTENSIONS[view.result.format]}`;
  const dest = await outputPath(flags.output, input, defaultName);
  const saved = await client.download(view.id, dest);
  process.stdout.write(`${saved.path}\n`);
  return EXIT.OK;
}

const EXTENSION_FORMATS: Record<string, string> = { '.png': 'png', '.jpg': 'jpeg', '.jpeg': 'jpeg', '.webp': 'webp' };

/**
 * `-o photo_enhanced.png` means PNG: without --format, the output file's extension picks the format. A --format that
 * contradicts the extension is a usage error, never a JPEG in a file named .png.
 */
function formatFor(output: string | undefined, format: string | undefined): string | undefined {
  const fromName = output ? EXTENSION_FORMATS[extname(output).toLowerCase()] : undefined;
  if (!fromName) return format;
  if (format === undefined || format === 'auto') return fromName;
  if (format !== fromName) {
    throw new CliError(EXIT.USAGE, `error: --format ${format} contradicts the output name ${output} (a ${fromName} name); change one of them`);
  }
  return format;
}

async function checkReadableFile(path: string, shown: string): Promise<void> {
  let isFile: boolean;
  try {
    isFile = (await stat(path)).isFile();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new CliError(EXIT.USAGE, `error: cannot read ${shown}: ${code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
  if (!isFile) throw new CliError(EXIT.USAGE, `error: ${shown} is not a file`);
}

/** Check option values with the API's own parser, so a typo is a usage error before anything is uploaded (also used by batch). */
export function validateOptions(flags: Pick<EnhanceFlags, (typeof OPTION_FLAGS)[number] | 'onlyCenterFace' | 'aligned'>): SubmitOptions {
  const fields: Record<string, string> = {};
  for (const key of OPTION_FLAGS) {
    const v = flags[key];
    if (v !== undefined) fields[key] = v;
  }
  if (flags.onlyCenterFace) fields.onlyCenterFace = 'true';
  if (flags.aligned) fields.aligned = 'true';
  let parsed: ReturnType<typeof parseJobOptions>;
  try {
    parsed = parseJobOptions(fields);
  } catch (err) {
    if (err instanceof ApiError) {
      const flag = typeof err.extensions.field === 'string' ? ` (--${String(err.extensions.field).replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)})` : '';
      throw new CliError(EXIT.USAGE, `error ${err.code}${flag}: ${err.message}`);
    }
    throw err;
  }
  // Send only what the user gave: the gateway owns the defaults.
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(fields)) out[key] = key === 'engine' ? parsed.engine : parsed.options[key as keyof typeof parsed.options];
  return out as SubmitOptions;
}

async function submitWithRetry(client: PhotoEnhanceClient, input: string, options: SubmitOptions, retries: number, quiet: boolean): Promise<JobAccepted> {
  // One key for every attempt: a retry after a lost answer cannot queue the photo twice.
  const idempotencyKey = randomUUID();
  for (let attempt = 0; ; attempt++) {
    try {
      return await client.submit(input, options, { idempotencyKey });
    } catch (err) {
      const busy = err instanceof ApiProblemError && (err.status === 503 || err.status === 429);
      if (!busy || attempt >= retries) throw err;
      const wait = err.retryAfterSeconds ?? 1;
      if (!quiet) process.stderr.write(`gateway busy (${err.code}); retrying in ${wait} s (retry ${attempt + 1} of ${retries})\n`);
      await new Promise((r) => setTimeout(r, wait * 1000));
    }
  }
}

async function outputPath(flag: string | undefined, input: string, defaultName: string): Promise<string> {
  if (!flag) return join(dirname(input), defaultName);
  const p = resolve(flag);
  const isDir = await stat(p).then((s) => s.isDirectory(), () => false);
  return isDir || /[/\\]$/.test(flag) ? join(p, defaultName) : p;
}
