import { fileURLToPath } from 'node:url';
import { join, resolve } from 'node:path';
import sharp from 'sharp';
import { EngineUnderTest, tsEngineArgv } from '@photoenhance/engine-protocol/testing';

export const repoRoot = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..');
export const esrganEntry = join(repoRoot, 'engines/esrgan/src/main.ts');
/** Real 1920 px group photos with faces, shipped in @vladmandic/face-api. */
export const samplePhoto = (n: 1 | 2 | 3 | 4 | 5 | 6): string => join(repoRoot, `node_modules/@vladmandic/face-api/demo/sample${n}.jpg`);

export function startEsrgan(env: NodeJS.ProcessEnv = {}): EngineUnderTest {
  return new EngineUnderTest(tsEngineArgv(esrganEntry), { cwd: repoRoot, env });
}

/** RGB pixels of an image file, optionally resized with a given kernel. */
export async function rgbOf(file: string, resize?: { width: number; height: number; kernel: keyof sharp.KernelEnum }): Promise<Buffer> {
  let s = sharp(file).removeAlpha();
  if (resize) s = s.resize(resize.width, resize.height, { kernel: resize.kernel });
  return s.raw().toBuffer();
}

/** Peak signal-to-noise ratio of two 8-bit images of the same size, in dB. */
export function psnr(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) throw new Error(`sizes differ: ${a.length} vs ${b.length}`);
  let se = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i]! - b[i]!;
    se += d * d;
  }
  return se === 0 ? Infinity : 10 * Math.log10((255 * 255) / (se / a.length));
}
