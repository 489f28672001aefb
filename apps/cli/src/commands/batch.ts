import { mkdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import { PhotoEnhanceClient } from '@photoenhance/client';
import { CliError, EXIT } from '../exit.js';
import { gatewayUrl } from '../paths.js';
import { validateOptions } from './enhance.js';
import { PHOTO_EXTENSIONS, findPhotos, type Source } from '../batch/inputs.js';
import { LockedError, Manifest, lockFolder, removeStalePartials, sameOptions } from '../batch/manifest.js';
import { BatchRunner, type BatchReport } from '../batch/runner.js';
import { startProgress } from '../batch/progress.js';
import { formatSummary, summaryJson } from '../batch/summary.js';
import type { BatchFlags } from '../specs/batch.js';

/** `photoenhance batch` (declared in specs/batch.ts). */
export async function batch(spec: string, flags: BatchFlags): Promise<number> {
  const options = validateOptions(flags);
  const max = Number(flags.concurrencyMax ?? '64');
  if (!Number.isInteger(max) || max < 1 || max > 1024) {
    throw new CliError(
      EXIT.USAGE,
      `error: --concurrency-max must be a whole number from 1 to 1024; received ${JSON.stringify(flags.concurrencyMax)}`,
    );
  }
  const outDir = resolve(flags.out);
  let source: Source;
  try {
    source = await findPhotos(spec, outDir);
  } catch (err) {
    throw new CliError(EXIT.USAGE, `error: ${(err as Error).message}`);
  }
  if (source.photos.length === 0) {
    const skipped = source.skipped.length ? ` (${source.skipped.length} other file${source.skipped.length > 1 ? 's' : ''} skipped)` : '';
    throw new CliError(EXIT.USAGE, `error: no photos in ${spec}${skipped}; photos are ${Object.keys(PHOTO_EXTENSIONS).join(' ')}`);
  }
  const client = new PhotoEnhanceClient({ baseUrl: gatewayUrl(flags.url), apiKey: flags.apiKey ?? process.env.PHOTOENHANCE_API_KEY });
  // Fail fast (exit 3) when there is no gateway, before touching the output folder.
  await client.health();

  await mkdir(outDir, { recursive: true });
  let release: () => void;
  try {
    release = lockFolder(outDir);
  } catch (err) {
    if (err instanceof LockedError) throw new CliError(EXIT.USAGE, `error: ${err.message}`);
    throw err;
  }
  try {
    await removeStalePartials(outDir);
    const manifest = await Manifest.open(outDir, source.base, options);
    if (!sameOptions(manifest.header.options, options)) {
      manifest.close();
      throw new CliError(
        EXIT.USAGE,
        `error: ${outDir} holds a batch made with other options (${describe(manifest.header.options)}; now ${describe(options)}); ` +
          `use another --out folder, or delete ${manifest.path} to start over`,
      );
    }
    return await runWithSignals(source, outDir, manifest, client, options, max, flags);
  } finally {
    release();
  }
}

async function runWithSignals(
  source: Source,
  outDir: string,
  manifest: Manifest,
  client: PhotoEnhanceClient,
  options: ReturnType<typeof validateOptions>,
  max: number,
  flags: BatchFlags,
): Promise<number> {
  const quiet = flags.quiet === true;
  const note = (line: string): void => {
    if (!quiet) process.stderr.write(`batch: ${line}\n`);
  };
  const stop = new AbortController();
  let signalExit: number = EXIT.INTERRUPTED;
  // First Ctrl-C: stop submitting, keep submitted jobs running, save the manifest. A second one leaves at once
  // (every change is already appended to the manifest).
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stop.signal.aborted) process.exit(signalExit);
    signalExit = signal === 'SIGTERM' ? 143 : EXIT.INTERRUPTED;
    process.stderr.write(
      `\nbatch: stopping (${signal}): no new submissions; jobs already submitted keep running (press Ctrl-C again to leave now)\n`,
    );
    stop.abort(new Error(signal));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  note(
    `${source.photos.length} photo${source.photos.length > 1 ? 's' : ''} in ${source.base}${source.skipped.length ? ` (${source.skipped.length} other files skipped)` : ''} → ${outDir}`,
  );
  const runner = new BatchRunner({ client, source, outDir, manifest, options, concurrencyMax: max, stop: stop.signal, note });
  const progress = startProgress(() => runner.snapshot(), { quiet });
  let report: BatchReport;
  try {
    report = await runner.run();
  } finally {
    progress.stop();
    manifest.close();
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  }
  const exitCode = report.interrupted ? signalExit : report.failed.length > 0 || report.unfinished > 0 ? EXIT.FAILED : EXIT.OK;
  process.stdout.write(flags.json ? summaryJson(report, exitCode) : formatSummary(report));
  if (report.interrupted) {
    note(
      `interrupted: ${report.unfinished} photo${report.unfinished === 1 ? '' : 's'} unfinished; submitted jobs keep running; run the same command again to resume`,
    );
  }
  return exitCode;
}

function describe(o: Record<string, unknown>): string {
  const parts = Object.entries(o).map(([k, v]) => `${k}=${String(v)}`);
  return parts.length ? parts.join(' ') : 'defaults';
}
