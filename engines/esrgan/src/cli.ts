/**
 * One file, one process: `node --import tsx engines/esrgan/src/cli.ts <input> <output> [scale] [quality]`.
 * The same pipeline as the resident engine, for one-shot profiles (engines/examples/esrgan-oneshot.json) and for the
 * resident-vs-one-shot benchmark. The output format follows the output's extension (.png, .jpg/.jpeg, .webp).
 * Exit codes: 0 done, 2 bad arguments, 3 unreadable or missing input, 1 anything else (message on stderr).
 */
import sharp from 'sharp';
import { EngineError } from '@photoenhance/engine-protocol';
import { DEFAULT_OPTIONS, type OutputFormat } from '@photoenhance/contracts';
import { EsrganEngine } from './engine.js';
import { readSettings } from './settings.js';

const [input, output, scaleArg = '2', qualityArg = '92'] = process.argv.slice(2);
const FORMATS: Record<string, OutputFormat> = { png: 'png', jpg: 'jpeg', jpeg: 'jpeg', webp: 'webp' };
const format = FORMATS[output?.split('.').pop()?.toLowerCase() ?? ''];
const scale = Number(scaleArg);
const quality = Number(qualityArg);
if (!input || !output || !format || ![1, 2, 4].includes(scale) || !(quality >= 1 && quality <= 100)) {
  process.stderr.write('usage: cli.ts <input> <output.png|.jpg|.webp> [scale 1|2|4] [quality 1..100]\n');
  process.exit(2);
}
sharp.cache(false);
sharp.concurrency(1);
try {
  const engine = await EsrganEngine.start(readSettings());
  const r = await engine.handle(
    { type: 'job', id: 'cli', input, output, options: { ...DEFAULT_OPTIONS, scale: scale as 1 | 2 | 4, format, quality } },
    { signal: new AbortController().signal, progress: () => undefined, log: (_l, m) => process.stderr.write(`${m}\n`) },
  );
  process.stderr.write(`${JSON.stringify({ output: r.output, timings: r.timings })}\n`);
  process.exit(0);
} catch (err) {
  process.stderr.write(`esrgan: ${(err as Error).message}\n`);
  process.exit(err instanceof EngineError && (err.code === 'IMAGE_UNREADABLE' || err.code === 'INPUT_MISSING') ? 3 : 1);
}
