/**
 * Measure the classic engine's footprint for admission: peak RSS (VmHWM) and time per job on a real photo.
 *   node --import tsx engines/classic/src/measure-footprint.ts [photo] [scale] [jobs] [format]
 * Defaults: face-api sample1.jpg (1920x1280), scale 2, 5 jobs, jpeg; photo `samples` cycles sample1..6. Linux only (reads /proc).
 */
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_OPTIONS, type OutputFormat } from '@photoenhance/contracts';
import { EngineUnderTest, tsEngineArgv } from '@photoenhance/engine-protocol/testing';

const root = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..');
const sample = (n: number): string => join(root, `node_modules/@vladmandic/face-api/demo/sample${n}.jpg`);
// "samples" cycles through all six face-api photos (all 1920 px wide).
const photoArg = process.argv[2] || sample(1);
const photoFor = (i: number): string => (photoArg === 'samples' ? sample((i % 6) + 1) : resolve(photoArg));
const scale = Number(process.argv[3] ?? 2) as 1 | 2 | 4;
const jobs = Number(process.argv[4] ?? 5);
const format = (process.argv[5] ?? 'jpeg') as OutputFormat;

const statusKiB = (pid: number, field: 'VmRSS' | 'VmHWM'): number => {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : Number.NaN;
};
const mib = (kib: number): string => `${(kib / 1024).toFixed(0)} MiB`;

const dir = mkdtempSync(join(tmpdir(), 'classic-footprint-'));
const engine = new EngineUnderTest(tsEngineArgv(join(root, 'engines/classic/src/main.ts')), { cwd: root });
try {
  await engine.ready(60_000);
  const pid = engine.pid!;
  console.log(`ready: RSS ${mib(statusKiB(pid, 'VmRSS'))}, peak ${mib(statusKiB(pid, 'VmHWM'))}`);
  for (let i = 0; i < jobs; i++) {
    const id = `m${i}`;
    const t0 = performance.now();
    const { result } = await engine.run({
      id,
      input: photoFor(i),
      output: join(dir, `${id}.${format === 'jpeg' ? 'jpg' : format}`),
      options: { ...DEFAULT_OPTIONS, scale, format },
    });
    const ms = Math.round(performance.now() - t0);
    const detail =
      result.type === 'done' ? `${result.output.width}x${result.output.height} ${JSON.stringify(result.timings)}` : JSON.stringify(result);
    console.log(
      `job ${i + 1}: ${ms} ms, RSS after ${mib(statusKiB(pid, 'VmRSS'))}, peak so far ${mib(statusKiB(pid, 'VmHWM'))} — ${detail}`,
    );
  }
} finally {
  await engine.stop();
  rmSync(dir, { recursive: true, force: true });
}
