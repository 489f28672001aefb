/**
 * `npm run bench` section `engines`: the engines on the same real photos, side by side in one run.
 *  - time per photo and peak RSS (VmHWM) of each engine process: classic, esrgan, portrait (resident) and the
 *    ImageMagick one-shot profile (one process per photo; skipped if /usr/bin/convert is missing);
 *  - quality against ground truth: the photo is halved, each engine brings it back ×2, and PSNR is taken against the
 *    original, over the whole photo and over the face regions (bicubic as the baseline);
 *  - resident vs one-shot throughput of the same engine (esrgan: the resident process vs engines/esrgan/src/cli.ts
 *    started per job), goal resident ≥ 5× one-shot.
 * BENCH_QUICK=1 (or { quick: true }) uses smaller photos and fewer jobs.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { DEFAULT_OPTIONS, type OutputFormat } from '@photoenhance/contracts';
import { EngineUnderTest, tsEngineArgv } from '@photoenhance/engine-protocol/testing';
import { samplePhoto } from '../test/support/images.js';
import { REPO } from '../test/support/stack.js';
import type { Row } from './spine.js';

const IMAGEMAGICK = '/usr/bin/convert';
const SECTION = 'engines';
const RESIDENT = ['classic', 'esrgan', 'portrait'] as const;

const kib = (pid: number, field: 'VmHWM' | 'VmRSS'): number => {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
};
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;

function psnr(a: Uint8Array, b: Uint8Array, width: number, box?: number[]): number {
  let se = 0;
  let n = 0;
  const [l, t, w, h] = box ?? [0, 0, width, a.length / 3 / width];
  for (let y = t!; y < t! + h!; y++) {
    for (let i = (y * width + l!) * 3; i < (y * width + l! + w!) * 3; i++) {
      const d = a[i]! - b[i]!;
      se += d * d;
      n++;
    }
  }
  return 10 * Math.log10((255 * 255) / (se / n));
}

interface Photo {
  input: string;
  truth: string;
  width: number;
  height: number;
}

/** Ground truth = the sample cropped to even size; input = half of it. */
async function makePhotos(dir: string, count: number, truthWidth: number): Promise<Photo[]> {
  const photos: Photo[] = [];
  for (let i = 1; i <= count; i++) {
    const truth = join(dir, `truth${i}.png`);
    const t = await sharp(samplePhoto(i)).resize({ width: truthWidth }).toBuffer({ resolveWithObject: true });
    const w = t.info.width - (t.info.width % 2);
    const h = t.info.height - (t.info.height % 2);
    await sharp(t.data).extract({ left: 0, top: 0, width: w, height: h }).png().toFile(truth);
    const input = join(dir, `input${i}.jpg`);
    await sharp(truth)
      .resize(w / 2, h / 2, { kernel: 'cubic' })
      .jpeg({ quality: 95 })
      .toFile(input);
    photos.push({ input, truth, width: w / 2, height: h / 2 });
  }
  return photos;
}

interface EngineRun {
  msPerPhoto: number;
  peakMiB: number;
  outputs: string[];
  faces: number[][][];
}

async function runResident(name: string, photos: Photo[], dir: string, format: OutputFormat): Promise<EngineRun> {
  const engine = new EngineUnderTest(tsEngineArgv(join(REPO, `engines/${name}/src/main.ts`)), {
    cwd: REPO,
    env: { MALLOC_ARENA_MAX: '2', UV_THREADPOOL_SIZE: '2' },
  });
  try {
    await engine.ready(120_000);
    const times: number[] = [];
    const outputs: string[] = [];
    const faces: number[][][] = [];
    for (const [i, p] of photos.entries()) {
      const output = join(dir, `${name}-${i}.${format === 'jpeg' ? 'jpg' : format}`);
      const t0 = performance.now();
      const { result } = await engine.run(
        { id: `${name}-${i}`, input: p.input, output, options: { ...DEFAULT_OPTIONS, scale: 2, format } },
        1_800_000,
      );
      times.push(performance.now() - t0);
      if (result.type !== 'done') throw new Error(`${name}: ${JSON.stringify(result)}`);
      outputs.push(output);
      faces.push((result.meta?.regions as number[][] | undefined) ?? []);
    }
    return { msPerPhoto: median(times), peakMiB: kib(engine.pid!, 'VmHWM') / 1024, outputs, faces };
  } finally {
    await engine.stop();
  }
}

/** Run a command to completion, sampling its VmHWM every 20 ms (the last sample before exit is its peak). */
function runCommand(argv: string[]): Promise<{ ms: number; peakKiB: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(argv[0]!, argv.slice(1), { cwd: REPO, stdio: ['ignore', 'ignore', 'pipe'] });
    let peak = 0;
    let stderr = '';
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setInterval(() => (peak = Math.max(peak, kib(child.pid!, 'VmHWM'))), 20);
    child.once('error', reject);
    child.once('exit', (code) => {
      clearInterval(timer);
      if (code !== 0) reject(new Error(`${argv.slice(0, 4).join(' ')} exited ${code}: ${stderr.slice(-500)}`));
      else resolve({ ms: performance.now() - t0, peakKiB: peak });
    });
  });
}

async function runImageMagick(photos: Photo[], dir: string): Promise<EngineRun> {
  const profile = JSON.parse(readFileSync(join(REPO, 'engines/examples/imagemagick.json'), 'utf8')) as {
    engines: Array<{ command: string[] }>;
  };
  const template = profile.engines[0]!.command;
  const times: number[] = [];
  const outputs: string[] = [];
  let peak = 0;
  for (const [i, p] of photos.entries()) {
    const output = join(dir, `imagemagick-${i}.png`);
    const vars: Record<string, string> = { input: p.input, output, scale: '2', quality: '92' };
    const r = await runCommand(template.map((a) => a.replace(/\{(\w+)\}/g, (m, k: string) => vars[k] ?? m)));
    times.push(r.ms);
    peak = Math.max(peak, r.peakKiB);
    outputs.push(output);
  }
  return { msPerPhoto: median(times), peakMiB: peak / 1024, outputs, faces: [] };
}

/** esrgan resident (one process, N jobs) vs esrgan one-shot (cli.ts, one process per job), same small photo. */
async function residentVsOneshot(dir: string, jobs: number, width: number): Promise<Row[]> {
  const input = join(dir, `small-${width}.jpg`);
  await sharp(samplePhoto(2)).resize({ width }).jpeg({ quality: 92 }).toFile(input);
  const engine = new EngineUnderTest(tsEngineArgv(join(REPO, 'engines/esrgan/src/main.ts')), { cwd: REPO, env: { MALLOC_ARENA_MAX: '2' } });
  let residentMs: number;
  let startMs: number;
  try {
    const ts = performance.now();
    await engine.ready(120_000);
    startMs = performance.now() - ts;
    const t0 = performance.now();
    for (let i = 0; i < jobs; i++) {
      const { result } = await engine.run(
        { id: `r${i}`, input, output: join(dir, `r${i}.png`), options: { ...DEFAULT_OPTIONS, scale: 2, format: 'png' } },
        600_000,
      );
      if (result.type !== 'done') throw new Error(JSON.stringify(result));
    }
    residentMs = performance.now() - t0;
  } finally {
    await engine.stop();
  }
  const cli = join(REPO, 'engines/esrgan/src/cli.ts');
  const t1 = performance.now();
  for (let i = 0; i < jobs; i++) await runCommand([process.execPath, '--import', 'tsx', cli, input, join(dir, `o${i}.png`), '2']);
  const oneshotMs = performance.now() - t1;
  const resident = (jobs / residentMs) * 1000;
  const oneshot = (jobs / oneshotMs) * 1000;
  const note = `${jobs} jobs of a ${width} px photo at scale 2, sequential`;
  return [
    {
      section: SECTION,
      metric: `esrgan resident throughput (${width} px)`,
      value: resident,
      unit: 'jobs/s',
      note: `${note}; start-up to ready ${Math.round(startMs)} ms, paid once`,
    },
    {
      section: SECTION,
      metric: `esrgan one-shot throughput (${width} px)`,
      value: oneshot,
      unit: 'jobs/s',
      note: `${note}; every job pays node + tsx + tfjs + WASM + model load`,
    },
    {
      section: SECTION,
      metric: `esrgan resident / one-shot (${width} px)`,
      value: resident / oneshot,
      unit: 'x',
      goal: '>= 5',
      note: 'the fixed start-up cost matters less as the photo (CPU compute) grows',
    },
  ];
}

export async function benchEngines(opts: { quick?: boolean } = {}): Promise<Row[]> {
  const quick = opts.quick ?? process.env.BENCH_QUICK === '1';
  const dir = mkdtempSync(join(tmpdir(), 'bench-engines-'));
  const rows: Row[] = [];
  try {
    // Ground truth 1920 px (quick: 960) → inputs of half that, brought back ×2 by every engine.
    const truthWidth = quick ? 960 : 1920;
    const photos = await makePhotos(dir, quick ? 1 : 2, truthWidth);
    const what = `${photos.length} face-api sample photo(s), ${photos[0]!.width} px → ×2, PNG out`;
    const runs: Record<string, EngineRun> = {};
    for (const name of RESIDENT) runs[name] = await runResident(name, photos, dir, 'png');
    if (existsSync(IMAGEMAGICK)) runs.imagemagick = await runImageMagick(photos, dir);
    else console.error(`engines bench: imagemagick skipped: ${IMAGEMAGICK} is not installed (apt-get install -y imagemagick)`);
    for (const [name, r] of Object.entries(runs)) {
      rows.push({ section: SECTION, metric: `${name} time per photo`, value: r.msPerPhoto, unit: 'ms', note: `${what}; median` });
      rows.push({
        section: SECTION,
        metric: `${name} peak RSS`,
        value: r.peakMiB,
        unit: 'MiB',
        note: name === 'imagemagick' ? 'one process per photo (largest)' : 'engine process VmHWM',
      });
    }

    // Quality: PSNR against the original (the input is its half), whole photo and face regions (from portrait).
    const faceBoxes = runs.portrait!.faces.map((regions) => regions.map((r) => r.map((v) => v * 2)));
    const candidates: Record<string, string[]> = {
      bicubic: [],
      ...Object.fromEntries(Object.entries(runs).map(([k, r]) => [k, r.outputs])),
    };
    for (const [i, p] of photos.entries()) {
      const out = join(dir, `bicubic-${i}.png`);
      await sharp(p.input)
        .resize(p.width * 2, p.height * 2, { kernel: 'cubic' })
        .png()
        .toFile(out);
      candidates.bicubic!.push(out);
    }
    const truths = await Promise.all(photos.map(async (p) => sharp(p.truth).removeAlpha().raw().toBuffer({ resolveWithObject: true })));
    for (const [name, files] of Object.entries(candidates)) {
      let whole = 0;
      let face = 0;
      let faceN = 0;
      for (const [i, file] of files.entries()) {
        const t = truths[i]!;
        const img = await sharp(file).removeAlpha().raw().toBuffer();
        whole += psnr(img, t.data, t.info.width);
        for (const box of faceBoxes[i] ?? []) {
          face += psnr(img, t.data, t.info.width, box);
          faceN++;
        }
      }
      rows.push({
        section: SECTION,
        metric: `${name} PSNR vs original`,
        value: whole / files.length,
        unit: 'dB',
        note: 'input = original halved (bicubic), ×2 back',
      });
      if (faceN)
        rows.push({
          section: SECTION,
          metric: `${name} PSNR on faces`,
          value: face / faceN,
          unit: 'dB',
          note: `${faceN} face regions found by portrait`,
        });
    }

    for (const width of [64, 128]) rows.push(...(await residentVsOneshot(dir, quick ? 3 : 6, width)));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  const rows = await benchEngines();
  for (const r of rows)
    console.log(
      `${r.metric.padEnd(34)} ${r.value.toFixed(r.value >= 100 ? 0 : 2).padStart(9)} ${r.unit.padEnd(6)} ${r.goal ?? ''} ${r.note ?? ''}`,
    );
}
