/**
 * `npm run bench -- quality`: output quality of the built-in engines against ground truth, over the real API.
 *
 * Ground truth = crops of the six face-api sample photos (bench/quality/set.ts), with a face and without; input = the
 * crop shrunk ×2 / ×4 by a box filter. Each engine brings the input back through the real stack (private Redis, the
 * gateway over HTTP, the worker with real engine processes); ImageMagick's Lanczos (/usr/bin/convert) and sharp's
 * lanczos3 are the baselines, computed here. Scores: PSNR (RGB) and SSIM (luma) over the whole crop and over the face
 * boxes face-api finds in the truth; time per photo (the job's run time) and the engine process's peak RSS.
 * Writes bench/results/quality-<stamp>.json, bench/results/quality-sheet.png (side-by-side crops) and
 * bench/results/quality-table.md, and puts the table into docs/quality.md; a BENCH_QUICK or QUALITY_ENGINES run
 * writes quality-sheet-quick.png and quality-table-quick.md instead and leaves the doc alone.
 *
 * QUALITY_ENGINES=classic,esrgan-slim (comma list of variant keys) runs a subset while developing.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import sharp from 'sharp';
import type { GatewayConfig } from '../apps/gateway/src/config.js';
import { nodeTsCommand } from '../apps/worker/src/profiles.js';
import { REPO, startStack, submit, waitForStatus, type Stack } from '../test/support/stack.js';
import { meanSsim, psnr, ssimMap, type Box, type Rgb } from './quality/metrics.js';
import { buildSet, readRgb, type Crop } from './quality/set.js';
import { cropSheet, type SheetRow } from './quality/sheet.js';
import type { Row } from './spine.js';

const IMAGEMAGICK = '/usr/bin/convert'; // /usr/local/bin/convert may be a stand-in: always the real one
const MiB = 1024 * 1024;
const SECTION = 'quality';

interface Variant {
  key: string;
  /** Shown in tables. */
  label: string;
  /** Engine name on the API, or a local baseline. */
  engine?: string;
  fields?: Record<string, string>;
  baseline?: (input: string, output: string, scale: number, width: number, height: number) => Promise<void>;
}

const VARIANTS: Variant[] = [
  {
    key: 'imagemagick-lanczos',
    label: 'ImageMagick Lanczos (baseline)',
    baseline: async (input, output, scale) => {
      const r = spawnSync(IMAGEMAGICK, [input, '-filter', 'Lanczos', '-resize', `${scale * 100}%`, output], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`convert failed: ${r.stderr}`);
    },
  },
  {
    key: 'sharp-lanczos3',
    label: 'sharp lanczos3 (baseline)',
    baseline: async (input, output, _scale, width, height) => {
      await sharp(input).resize(width, height, { kernel: 'lanczos3' }).png().toFile(output);
    },
  },
  { key: 'classic', label: 'classic', engine: 'classic' },
  // The same engine with every enhancement step off: our plain upscale, over the API.
  {
    key: 'classic-plain',
    label: 'classic, steps off (plain upscale)',
    engine: 'classic',
    fields: { denoise: 'false', tone: 'false', sharpen: 'false' },
  },
  { key: 'esrgan-slim', label: 'esrgan (slim)', engine: 'esrgan' },
  { key: 'esrgan-medium', label: 'esrgan (medium)', engine: 'esrgan-medium' },
  { key: 'portrait', label: 'portrait', engine: 'portrait' },
];

interface Score {
  variant: string;
  scale: number;
  crop: string;
  psnr: number;
  ssim: number;
  facePsnr: number[];
  faceSsim: number[];
  runMs: number;
}

const mean = (xs: number[]): number => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : Number.NaN);
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;

function vmHwmMiB(pid: number): number {
  try {
    const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/** Engine profiles for the worker: the built-ins, and esrgan again with the medium model under its own name. */
function profiles(): unknown[] {
  return [
    { name: 'classic' },
    { name: 'esrgan', jobTimeoutMs: 1_800_000 },
    { name: 'portrait', jobTimeoutMs: 1_800_000 },
    {
      name: 'esrgan-medium',
      kind: 'resident',
      command: nodeTsCommand(join(REPO, 'engines/esrgan/src/main.ts')),
      env: { ESRGAN_MODEL: 'medium', UV_THREADPOOL_SIZE: '2', MALLOC_ARENA_MAX: '2' },
      expectedMemoryBytes: 1024 * MiB,
      memoryLimitBytes: 3072 * MiB,
      startupTimeoutMs: 120_000,
      jobTimeoutMs: 1_800_000,
    },
  ];
}

async function throughApi(
  stack: Stack,
  engine: string,
  input: string,
  scale: number,
  fields: Record<string, string>,
  output: string,
): Promise<number> {
  let res = await submit(
    stack.gw.url,
    readFileSync(input),
    { engine, scale: String(scale), format: 'png', ...fields },
    'crop.png',
    'image/png',
  );
  // A loaded machine may still shed load now and then: back off as a client should (Retry-After), a bounded number of times.
  for (let tries = 0; res.status === 503 && tries < 10; tries++) {
    const wait = Math.min(10, Number(res.headers.get('retry-after')) || 1);
    await new Promise((r) => setTimeout(r, wait * 1000));
    res = await submit(
      stack.gw.url,
      readFileSync(input),
      { engine, scale: String(scale), format: 'png', ...fields },
      'crop.png',
      'image/png',
    );
  }
  if (res.status !== 202) throw new Error(`${engine}: POST /v1/jobs answered ${res.status}: ${await res.text()}`);
  const { id } = (await res.json()) as { id: string };
  const view = (await waitForStatus(stack.gw.url, id, ['completed', 'failed', 'canceled'], 1_800_000)) as {
    status: string;
    error?: unknown;
    timings?: { runMs?: number };
  };
  if (view.status !== 'completed') throw new Error(`${engine}: job ${id} ${view.status}: ${JSON.stringify(view.error)}`);
  const dl = await fetch(`${stack.gw.url}/v1/jobs/${id}/result`);
  if (dl.status !== 200) throw new Error(`${engine}: result download answered ${dl.status}`);
  writeFileSync(output, Buffer.from(await dl.arrayBuffer()));
  return view.timings?.runMs ?? Number.NaN;
}

async function enginePid(stack: Stack, engine: string): Promise<number | undefined> {
  const body = (await (await fetch(`${stack.gw.url}/v1/system`)).json()) as {
    hosts: Array<{ processes: Array<{ profile: string; pid?: number }> }>;
  };
  return body.hosts.flatMap((h) => h.processes).find((p) => p.profile === engine && p.pid)?.pid;
}

function score(variant: string, scale: number, crop: Crop, out: Rgb, runMs: number): Score {
  if (out.width !== crop.truth.width || out.height !== crop.truth.height) {
    throw new Error(`${variant} x${scale} ${crop.name}: ${out.width}x${out.height}, expected ${crop.truth.width}x${crop.truth.height}`);
  }
  const map = ssimMap(out, crop.truth);
  return {
    variant,
    scale,
    crop: crop.name,
    psnr: psnr(out, crop.truth),
    ssim: meanSsim(map),
    facePsnr: crop.faces.map((f) => psnr(out, crop.truth, f)),
    faceSsim: crop.faces.map((f) => meanSsim(map, f)),
    runMs,
  };
}

export interface QualityOptions {
  quick?: boolean;
  only?: string[];
}

export async function benchQuality(opts: QualityOptions = {}): Promise<Row[]> {
  const quick = opts.quick ?? process.env.BENCH_QUICK === '1';
  const only =
    opts.only ??
    process.env.QUALITY_ENGINES?.split(',')
      .map((s) => s.trim())
      .filter(Boolean);
  const variants = VARIANTS.filter((v) => !only?.length || only.includes(v.key)).filter((v) => {
    if (v.key.startsWith('imagemagick') && !existsSync(IMAGEMAGICK)) {
      console.error(`quality bench: ${v.key} skipped: ${IMAGEMAGICK} is not installed (apt-get install -y imagemagick)`);
      return false;
    }
    return true;
  });
  const scales = [2, 4];
  const dir = mkdtempSync(join(tmpdir(), 'bench-quality-'));
  const rows: Row[] = [];
  const t0 = performance.now();
  try {
    const crops = await buildSet({
      dir,
      width: quick ? 320 : 512,
      height: quick ? 320 : 384,
      faceSamples: quick ? [1, 3] : [1, 2, 3, 4, 5, 6],
      plainSamples: quick ? [2] : [2, 5],
      scales,
    });
    console.error(
      `quality bench: ${crops.length} crops (${crops.map((c) => c.name).join(', ')}), ${crops[0]!.truth.width}x${crops[0]!.truth.height}, set built in ${Math.round(performance.now() - t0)} ms`,
    );
    const engines = [...new Set(variants.flatMap((v) => (v.engine ? [v.engine] : [])))];
    const stack = engines.length
      ? await startStack({
          // The bench scores images in this process, between jobs: its event loop is busy by design, which the
          // gateway's load shedding would read as overload (0 = that check off).
          gateway: { maxEventLoopDelayMs: 0 } as Partial<GatewayConfig>,
          engines: profiles(),
          workerEnv: { WORKER_ENGINES: engines.join(','), HEARTBEAT_MS: '500' },
        })
      : undefined;
    const scores: Score[] = [];
    const peaks: Record<string, number> = {};
    /** Outputs kept for the crop sheet: `${variant}|${scale}|${crop}` → pixels. */
    const kept = new Map<string, Rgb>();
    try {
      for (const v of variants) {
        for (const scale of scales) {
          for (const crop of crops) {
            const input = crop.inputs[scale]!;
            const output = join(dir, `${crop.name}-x${scale}-${v.key}.png`);
            let runMs: number;
            if (v.baseline) {
              const t = performance.now();
              await v.baseline(input, output, scale, crop.truth.width, crop.truth.height);
              runMs = performance.now() - t;
            } else {
              runMs = await throughApi(stack!, v.engine!, input, scale, v.fields ?? {}, output);
            }
            const out = await readRgb(output);
            scores.push(score(v.key, scale, crop, out, runMs));
            kept.set(`${v.key}|${scale}|${crop.name}`, out);
          }
        }
        if (v.engine) {
          const pid = await enginePid(stack!, v.engine);
          if (pid) peaks[v.key] = vmHwmMiB(pid);
        }
        console.error(`quality bench: ${v.key} done at ${Math.round((performance.now() - t0) / 1000)} s`);
      }
    } finally {
      await stack?.close();
    }

    // Summary per (variant, scale).
    const summary: Array<{
      variant: Variant;
      scale: number;
      psnr: number;
      ssim: number;
      facePsnr: number;
      faceSsim: number;
      plainPsnr: number;
      ms: number;
      peakMiB: number;
      faces: number;
    }> = [];
    for (const v of variants) {
      for (const scale of scales) {
        const s = scores.filter((x) => x.variant === v.key && x.scale === scale);
        const facePsnr = s.flatMap((x) => x.facePsnr);
        summary.push({
          variant: v,
          scale,
          psnr: mean(s.map((x) => x.psnr)),
          ssim: mean(s.map((x) => x.ssim)),
          facePsnr: mean(facePsnr),
          faceSsim: mean(s.flatMap((x) => x.faceSsim)),
          plainPsnr: mean(s.filter((x) => x.crop.endsWith('-plain')).map((x) => x.psnr)),
          ms: median(s.map((x) => x.runMs)),
          peakMiB: peaks[v.key] ?? Number.NaN,
          faces: facePsnr.length,
        });
      }
    }
    const what = `${crops.length} crops ${crops[0]!.truth.width}x${crops[0]!.truth.height} of the face-api samples, box-shrunk and brought back`;
    for (const s of summary) {
      const at = `${s.variant.key} x${s.scale}`;
      rows.push({ section: SECTION, metric: `${at} PSNR`, value: s.psnr, unit: 'dB', note: what });
      rows.push({ section: SECTION, metric: `${at} SSIM`, value: s.ssim, unit: '' });
      rows.push({
        section: SECTION,
        metric: `${at} PSNR on faces`,
        value: s.facePsnr,
        unit: 'dB',
        note: `${s.faces} face boxes (face-api)`,
      });
      rows.push({ section: SECTION, metric: `${at} SSIM on faces`, value: s.faceSsim, unit: '' });
      rows.push({
        section: SECTION,
        metric: `${at} time per photo`,
        value: s.ms,
        unit: 'ms',
        note: s.variant.engine ? 'job run time, median' : 'in-process, median',
      });
      if (Number.isFinite(s.peakMiB))
        rows.push({
          section: SECTION,
          metric: `${at} peak RSS`,
          value: s.peakMiB,
          unit: 'MiB',
          note: 'engine process VmHWM over the whole set',
        });
    }

    // Table (markdown) and crop sheet.
    const f = (x: number, d = 2): string => (Number.isFinite(x) ? x.toFixed(d) : '–');
    const table = [
      `| way up | scale | PSNR (dB) | SSIM | faces PSNR (dB) | faces SSIM | no-face crops PSNR (dB) | time per photo | peak RSS |`,
      `|---|---|---|---|---|---|---|---|---|`,
      ...summary.map(
        (s) =>
          `| ${s.variant.label} | ×${s.scale} | ${f(s.psnr)} | ${f(s.ssim, 4)} | ${f(s.facePsnr)} | ${f(s.faceSsim, 4)} | ${f(s.plainPsnr)} | ${s.ms >= 1000 ? `${f(s.ms / 1000, 1)} s` : `${Math.round(s.ms)} ms`} | ${Number.isFinite(s.peakMiB) ? `${Math.round(s.peakMiB)} MiB` : '–'} |`,
      ),
    ].join('\n');
    const results = join(REPO, 'bench/results');
    mkdirSync(results, { recursive: true });
    const at = new Date().toISOString();
    const context = `${what}; ${at}, ${quick ? 'BENCH_QUICK' : 'full set'}`;
    // Only a full run replaces the committed sheet and table (docs/quality.md shows them); quick or partial runs
    // write *-quick files beside them (ignored by git).
    const full = !quick && !only?.length;
    const suffix = full ? '' : '-quick';
    writeFileSync(join(results, `quality-table${suffix}.md`), `${table}\n\n${context}\n`);
    writeFileSync(
      join(results, `quality-${at.replace(/[:.]/g, '-')}.json`),
      JSON.stringify(
        {
          at,
          quick,
          crops: crops.map(({ name, region, faces }) => ({ name, region, faces })),
          summary: summary.map((s) => ({ ...s, variant: s.variant.key })),
          scores,
        },
        null,
        2,
      ),
    );
    const sheet = sheetRows(crops, variants, kept);
    if (sheet.length) await cropSheet(sheet, join(results, `quality-sheet${suffix}.png`));
    if (full) updateDoc(table, context);
    console.error(`\n${table}\n`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}

/** Rows of the crop sheet: a face at ×2 and ×4, a second face, a plain crop, portrait's blend edge and an ESRGAN tile corner. */
function sheetRows(crops: Crop[], variants: Variant[], kept: Map<string, Rgb>): SheetRow[] {
  const rows: SheetRow[] = [];
  const faceRegion = (c: Crop): Box => {
    const f = c.faces[0]!;
    // Eyes and nose, close enough to see pixels: about half the face box, centred a little above its middle.
    const side = Math.round(Math.min(c.truth.width, c.truth.height, Math.max(64, Math.max(f.width, f.height) * 0.55)));
    const left = Math.max(0, Math.min(c.truth.width - side, Math.round(f.left + f.width / 2 - side / 2)));
    const top = Math.max(0, Math.min(c.truth.height - side, Math.round(f.top + f.height * 0.45 - side / 2)));
    return { left, top, width: side, height: side };
  };
  const add = (c: Crop, scale: number, label: string, region: Box): void => {
    const images = [{ label: 'original', img: c.truth }];
    for (const v of variants) {
      const img = kept.get(`${v.key}|${scale}|${c.name}`);
      if (img) images.push({ label: v.label.replace(' (baseline)', ''), img });
    }
    rows.push({ label, region, images });
  };
  const faces = crops.filter((c) => c.faces.length > 0);
  if (faces[0]) {
    add(faces[0], 2, `${faces[0].name} ×2 face`, faceRegion(faces[0]));
    add(faces[0], 4, `${faces[0].name} ×4 face`, faceRegion(faces[0]));
  }
  if (faces[1]) add(faces[1], 2, `${faces[1].name} ×2 face`, faceRegion(faces[1]));
  const plain = crops.find((c) => c.faces.length === 0);
  if (plain) {
    const side = Math.min(128, plain.truth.height);
    add(plain, 2, `${plain.name} ×2 detail`, {
      left: Math.round(plain.truth.width / 2 - side / 2),
      top: Math.round(plain.truth.height / 2 - side / 2),
      width: side,
      height: side,
    });
  }
  // Where portrait's blend ends: the face box grown by its 30 % margin (engines/portrait FACE_MARGIN); its left edge.
  if (faces[0]) {
    const f = faces[0].faces[0]!;
    const side = 96;
    const x = Math.round(f.left - 0.3 * f.width);
    const left = Math.max(0, Math.min(faces[0].truth.width - side, x - side / 2));
    const top = Math.max(0, Math.min(faces[0].truth.height - side, Math.round(f.top + f.height / 2 - side / 2)));
    add(faces[0], 2, `${faces[0].name} ×2 blend edge`, { left, top, width: side, height: side });
  }
  // ESRGAN works in 128 px input tiles (ESRGAN_TILE): at ×2 the first tile corner is at output (256, 256).
  const c = faces[0] ?? crops[0];
  if (c && c.truth.width > 288 && c.truth.height > 288)
    add(c, 2, `${c.name} ×2 tile corner`, { left: 256 - 48, top: 256 - 48, width: 96, height: 96 });
  return rows;
}

/** Replace the generated table in docs/quality.md (between the markers). */
function updateDoc(table: string, context: string): void {
  const file = join(REPO, 'docs/quality.md');
  if (!existsSync(file)) return;
  const doc = readFileSync(file, 'utf8');
  const start = '<!-- quality-table:start -->';
  const end = '<!-- quality-table:end -->';
  const i = doc.indexOf(start);
  const j = doc.indexOf(end);
  if (i < 0 || j < i) return;
  writeFileSync(file, `${doc.slice(0, i + start.length)}\n${table}\n\n${context}\n${doc.slice(j)}`);
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  const rows = await benchQuality();
  for (const r of rows)
    console.log(`${r.metric.padEnd(40)} ${r.value.toFixed(r.value >= 100 ? 0 : 3).padStart(9)} ${r.unit.padEnd(4)} ${r.note ?? ''}`);
  process.exit(0);
}
