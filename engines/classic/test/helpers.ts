import { fileURLToPath } from 'node:url';
import { join, resolve } from 'node:path';
import { EngineUnderTest, tsEngineArgv } from '@photoenhance/engine-protocol/testing';

export const repoRoot = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..');
export const classicEntry = join(repoRoot, 'engines/classic/src/main.ts');
/** Real 1920 px group photos with faces, shipped in @vladmandic/face-api. */
export const samplePhoto = (n: 1 | 2 | 3 | 4 | 5 | 6): string => join(repoRoot, `node_modules/@vladmandic/face-api/demo/sample${n}.jpg`);

export function startClassic(env: NodeJS.ProcessEnv = {}): EngineUnderTest {
  return new EngineUnderTest(tsEngineArgv(classicEntry), { cwd: repoRoot, env });
}

/** Deterministic Gaussian noise of σ `sigma` added to every channel of interleaved 8-bit pixels. */
export function addNoise<T extends { data: Uint8Array }>(img: T, sigma: number, seed = 7): T {
  let s = seed;
  const rnd = (): number => {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    return (s + 1) / 0x80000001;
  };
  const out = new Uint8ClampedArray(img.data.length);
  for (let i = 0; i < out.length; i++) out[i] = img.data[i]! + sigma * Math.sqrt(-2 * Math.log(rnd())) * Math.cos(2 * Math.PI * rnd());
  return { ...img, data: new Uint8Array(out.buffer) };
}
