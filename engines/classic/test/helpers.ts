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
