import { randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, open, rename, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { pipeline } from 'node:stream/promises';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { ApiError, FORMAT_EXTENSIONS, parseJobOptions, type JobAccepted, type JobView } from '@photoenhance/contracts';
import { ApiProblemError, PhotoEnhanceClient, type SubmitOptions } from '@photoenhance/client';
import { CliError, EXIT, jobErrorLine } from '../exit.js';
import { gatewayUrl } from '../paths.js';
import { createProgress } from '../progress.js';
import { paint } from '../colour.js';
import type { EnhanceFlags } from '../specs/enhance.js';

/** Flags that map one-to-one to API fields (commander camel-cases --bg-tile to bgTile, the API's name). */
const OPTION_FLAGS = ['scale', 'engine', 'format', 'quality', 'weight', 'bgTile', 'bgUpsampler', 'priority'] as const;

/** `photoenhance enhance` (declared in specs/enhance.ts). */
export async function enhance(photo: string, flags: EnhanceFlags): Promise<number> {
  const toStdout = flags.output === '-';
  if (toStdout && flags.json)
    throw new CliError(EXIT.USAGE, 'error: -o - (the image on stdout) and --json (the job on stdout) cannot both be used; pick one');
  const options = validateOptions({ ...flags, format: formatFor(toStdout ? undefined : flags.output, flags.format) });
  const retries = Number(flags.retries ?? '3');
  if (!Number.isInteger(retries) || retries < 0)
    throw new CliError(EXIT.USAGE, `error: --retries must be a whole number >= 0; received ${JSON.stringify(flags.retries)}`);
  // stdin and stdout go through a private temp folder: the client uploads and downloads files.
  const scratch = photo === '-' || toStdout ? await mkdtemp(join(tmpdir(), 'photoenhance-')) : undefined;
  try {
    const input = photo === '-' ? await stdinToFile(scratch!) : resolve(photo);
    if (photo !== '-') await checkReadableFile(input, photo);
    return await run(input, photo === '-', options, retries, flags, scratch);
  } finally {
    if (scratch) await rm(scratch, { recursive: true, force: true });
  }
}

async function run(
  input: string,
  fromStdin: boolean,
  options: SubmitOptions,
  retries: number,
  flags: EnhanceFlags,
  scratch: string | undefined,
): Promise<number> {
  const quiet = flags.quiet === true;
  const client = new PhotoEnhanceClient({ baseUrl: gatewayUrl(flags.url), apiKey: flags.apiKey ?? process.env.PHOTOENHANCE_API_KEY });
  const accepted = await submitWithRetry(client, input, options, retries, quiet);
  const progress = createProgress(accepted.id, quiet);
  if (!quiet && accepted.warning) process.stderr.write(`${paint(process.stderr)('yellow', 'warning')}: ${accepted.warning}\n`);

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
    if (flags.json) process.stdout.write(`${JSON.stringify(view, null, 2)}\n`);
    const e = view.error ?? {
      code: view.status === 'canceled' ? 'JOB_CANCELED' : 'ENGINE_FAILED',
      message: `job ${view.id} ended ${view.status}`,
    };
    throw new CliError(EXIT.FAILED, jobErrorLine(e.code, e.message));
  }
  const ext = FORMAT_EXTENSIONS[view.result.format];
  if (flags.output === '-') {
    const saved = await client.download(view.id, join(scratch!, `result.${ext}`));
    await pipeline(createReadStream(saved.path), process.stdout, { end: false });
    return EXIT.OK;
  }
  const stem = fromStdin ? 'stdin' : basename(input, extname(input));
  const defaultName = `${stem}_enhanced.${ext}`;
  // From stdin there is no folder "beside the photo": the current one.
  const dest = await outputPath(flags.output, fromStdin ? join(process.cwd(), 'stdin') : input, defaultName);
  const saved = await client.download(view.id, dest);
  process.stdout.write(flags.json ? `${JSON.stringify({ ...view, path: saved.path }, null, 2)}\n` : `${saved.path}\n`);
  return EXIT.OK;
}

/** Magic bytes to a file extension, so the upload's name (and the download name) says what it is. */
function sniffExtension(head: Buffer): string {
  if (head[0] === 0xff && head[1] === 0xd8) return '.jpg';
  if (head.subarray(0, 4).toString('latin1') === '\x89PNG') return '.png';
  if (head.subarray(0, 4).toString('latin1') === 'RIFF' && head.subarray(8, 12).toString('latin1') === 'WEBP') return '.webp';
  if (head.subarray(0, 2).toString('latin1') === 'BM') return '.bmp';
  if (['II*\0', 'MM\0*'].includes(head.subarray(0, 4).toString('latin1'))) return '.tif';
  return '.bin';
}

async function stdinToFile(dir: string): Promise<string> {
  if (process.stdin.isTTY)
    throw new CliError(
      EXIT.USAGE,
      'error: - reads the photo from stdin, but stdin is a terminal; pipe a photo in (cat photo.jpg | photoenhance enhance -)',
    );
  const raw = join(dir, 'stdin.upload');
  await pipeline(process.stdin, createWriteStream(raw));
  const fh = await open(raw, 'r');
  const head = Buffer.alloc(12);
  try {
    const { bytesRead } = await fh.read(head, 0, 12, 0);
    if (bytesRead === 0) throw new CliError(EXIT.USAGE, 'error: stdin was empty; pipe a photo in (cat photo.jpg | photoenhance enhance -)');
  } finally {
    await fh.close();
  }
  const named = join(dir, `stdin${sniffExtension(head)}`);
  await rename(raw, named);
  return named;
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
    throw new CliError(
      EXIT.USAGE,
      `error: --format ${format} contradicts the output name ${output} (a ${fromName} name); change one of them`,
    );
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
export function validateOptions(
  flags: Pick<EnhanceFlags, (typeof OPTION_FLAGS)[number] | 'onlyCenterFace' | 'aligned' | 'modelVersion' | 'version'>,
): SubmitOptions {
  if (flags.version !== undefined) {
    throw new CliError(
      EXIT.USAGE,
      `error: --version is the program's version now; the GFPGAN model version is --model-version ${flags.version}`,
    );
  }
  const fields: Record<string, string> = {};
  // The API field stays `version`; only the flag is renamed.
  if (flags.modelVersion !== undefined) fields.version = flags.modelVersion;
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
      const field = typeof err.extensions.field === 'string' ? String(err.extensions.field) : undefined;
      const flag = field ? ` (--${field === 'version' ? 'model-version' : field.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)})` : '';
      throw new CliError(EXIT.USAGE, `error ${err.code}${flag}: ${err.message}`);
    }
    throw err;
  }
  // Send only what the user gave: the gateway owns the defaults.
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(fields)) out[key] = key === 'engine' ? parsed.engine : parsed.options[key as keyof typeof parsed.options];
  return out as SubmitOptions;
}

async function submitWithRetry(
  client: PhotoEnhanceClient,
  input: string,
  options: SubmitOptions,
  retries: number,
  quiet: boolean,
): Promise<JobAccepted> {
  // One key for every attempt: a retry after a lost answer cannot queue the photo twice.
  const idempotencyKey = randomUUID();
  for (let attempt = 0; ; attempt++) {
    try {
      return await client.submit(input, options, { idempotencyKey });
    } catch (err) {
      // No worker for the engine is not "busy": waiting a few seconds will not start one, so say so at once (exit.ts).
      const busy = err instanceof ApiProblemError && (err.status === 503 || err.status === 429) && err.code !== 'NO_WORKER_FOR_ENGINE';
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
  const isDir = await stat(p).then(
    (s) => s.isDirectory(),
    () => false,
  );
  return isDir || /[/\\]$/.test(flag) ? join(p, defaultName) : p;
}
