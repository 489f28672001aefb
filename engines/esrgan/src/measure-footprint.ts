/**
 * Measure a neural engine's footprint for admission: peak RSS (VmHWM) and time per job on real photos.
 *   node --import tsx engines/esrgan/src/measure-footprint.ts [esrgan|portrait] [scale] [slim|medium] [samples]
 * Defaults: esrgan, scale 2, slim, face-api samples 1 and 4 (1920 px), JPEG out. Linux only (reads /proc).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_OPTIONS } from '@photoenhance/contracts';
import { EngineUnderTest, tsEngineArgv } from '@photoenhance/engine-protocol/testing';

const root = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..');
const [engineName = 'esrgan', scaleArg = '2', model = 'slim', samples = '1,4'] = process.argv.slice(2);
const scale = Number(scaleArg) as 1 | 2 | 4;
const mib = (pid: number, field: 'VmHWM' | 'VmRSS'): number =>
  Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;

const dir = mkdtempSync(join(tmpdir(), 'neural-footprint-'));
const engine = new EngineUnderTest(tsEngineArgv(join(root, `engines/${engineName}/src/main.ts`)), {
  cwd: root,
  env: { MALLOC_ARENA_MAX: '2', UV_THREADPOOL_SIZE: '2', ESRGAN_MODEL: model },
});
try {
  const t0 = performance.now();
  await engine.ready(120_000);
  const pid = engine.pid!;
  console.log(
    `${engineName} (${model}) ready in ${Math.round(performance.now() - t0)} ms: RSS ${mib(pid, 'VmRSS').toFixed(0)} MiB, peak ${mib(pid, 'VmHWM').toFixed(0)} MiB`,
  );
  for (const n of samples.split(',')) {
    const input = join(root, `node_modules/@vladmandic/face-api/demo/sample${n}.jpg`);
    const t = performance.now();
    const { result } = await engine.run(
      { id: `m${n}`, input, output: join(dir, `m${n}.jpg`), options: { ...DEFAULT_OPTIONS, scale, format: 'jpeg' } },
      1_800_000,
    );
    const detail =
      result.type === 'done'
        ? `${result.output.width}x${result.output.height} ${JSON.stringify(result.timings)} ${JSON.stringify(result.meta)}`
        : JSON.stringify(result);
    console.log(
      `sample${n} x${scale}: ${Math.round(performance.now() - t)} ms, RSS after ${mib(pid, 'VmRSS').toFixed(0)} MiB, peak so far ${mib(pid, 'VmHWM').toFixed(0)} MiB — ${detail}`,
    );
  }
} finally {
  await engine.stop();
  rmSync(dir, { recursive: true, force: true });
}
