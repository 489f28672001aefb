import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_OPTIONS, type JobOptions } from '@photoenhance/contracts';
import { EngineUnderTest, tsEngineArgv } from '@photoenhance/engine-protocol/testing';
import { PORTRAIT_CAPABILITIES } from '../src/index.js';

/**
 * The real portrait engine process next to the real classic engine, on crops of a real group photo. Outside the face
 * regions the portrait result must be the classic result; along a region's edge it must still be (the feathered mask
 * is 0 there, so no seam); inside, the face must differ (ESRGAN was applied).
 */
const root = fileURLToPath(new URL('../../../', import.meta.url));
const sample = (n: number): string => join(root, `node_modules/@vladmandic/face-api/demo/sample${n}.jpg`);
let dir: string;
let portrait: EngineUnderTest;
let classic: EngineUnderTest;
let seq = 0;

async function run(engine: EngineUnderTest, input: string, o: Partial<JobOptions> = {}) {
  const id = `p-${++seq}`;
  const output = join(dir, `${id}.png`);
  const { result } = await engine.run({ id, input, output, options: { ...DEFAULT_OPTIONS, scale: 2, format: 'png', ...o } }, 120_000);
  if (result.type !== 'done') throw new Error(JSON.stringify(result));
  return { result, output };
}

const raw = async (file: string) => sharp(file).removeAlpha().raw().toBuffer({ resolveWithObject: true });

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'portrait-engine-'));
  // Two faces of sample1 (boxes near x 414 and 838), 300 px wide; and a patch of background without faces.
  await sharp(sample(1))
    .extract({ left: 330, top: 250, width: 820, height: 600 })
    .resize({ width: 300 })
    .png()
    .toFile(join(dir, 'faces.png'));
  await sharp(sample(1)).extract({ left: 0, top: 900, width: 300, height: 300 }).png().toFile(join(dir, 'no-face.png'));
  portrait = new EngineUnderTest(tsEngineArgv(join(root, 'engines/portrait/src/main.ts')), { cwd: root, env: { ESRGAN_TILE: '64' } });
  classic = new EngineUnderTest(tsEngineArgv(join(root, 'engines/classic/src/main.ts')), { cwd: root });
  const [ready] = await Promise.all([portrait.ready(60_000), classic.ready(60_000)]);
  expect(ready).toMatchObject({
    engine: 'portrait',
    capabilities: PORTRAIT_CAPABILITIES,
    info: { backend: 'wasm', detector: expect.stringContaining('face-api') },
  });
});

afterAll(async () => {
  if (portrait) {
    expect(portrait.badLines).toEqual([]);
    expect(await portrait.stop()).toEqual({ code: 0, signal: null });
  }
  await classic?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('portrait engine (real process, real photo)', () => {
  it.each([
    [1, 1, 4],
    [4, 4, 4],
    [4, 128, 2],
    [128, 4, 4],
  ] as const)(
    'handles a %i×%i image at scale %i (the smallest and most extreme sizes the gateway accepts: 4 px, 32:1)',
    async (w, h, scale) => {
      const input = join(dir, `size-${w}x${h}.png`);
      await sharp({ create: { width: w, height: h, channels: 3, background: '#7a5c3e' } })
        .png()
        .toFile(input);
      const { output } = await run(portrait, input, { scale });
      const meta = await sharp(output).metadata();
      expect([meta.width, meta.height]).toEqual([w * scale, h * scale]);
    },
  );

  it('restores the faces and blends them in without a seam', async () => {
    const input = join(dir, 'faces.png');
    const p = await run(portrait, input, { weight: 1 });
    const c = await run(classic, input);
    expect(p.result.meta?.faces).toBe(2);
    expect(p.result.applied).toEqual({
      scale: 2,
      format: 'png',
      onlyCenterFace: false,
      weight: 1,
      denoise: false,
      tone: false,
      sharpen: true,
    });
    const a = await raw(p.output);
    const b = await raw(c.output);
    expect([a.info.width, a.info.height]).toEqual([b.info.width, b.info.height]);
    const W = a.info.width;
    const diff = (x: number, y: number): number => {
      const i = (y * W + x) * 3;
      return (
        (Math.abs(a.data[i]! - b.data[i]!) + Math.abs(a.data[i + 1]! - b.data[i + 1]!) + Math.abs(a.data[i + 2]! - b.data[i + 2]!)) / 3
      );
    };
    for (const [l, t, w, h] of p.result.meta!.regions as number[][]) {
      const [L, T, R, B] = [l! * 2, t! * 2, (l! + w!) * 2 - 1, (t! + h!) * 2 - 1];
      let edge = 0;
      let edgeN = 0;
      for (let x = L; x <= R; x++)
        for (const y of [T, B]) {
          edge += diff(x, y);
          edgeN++;
        }
      for (let y = T; y <= B; y++)
        for (const x of [L, R]) {
          edge += diff(x, y);
          edgeN++;
        }
      let core = 0;
      let coreN = 0;
      for (let y = T + (B - T) / 3; y < B - (B - T) / 3; y++)
        for (let x = L + (R - L) / 3; x < R - (R - L) / 3; x++) {
          core += diff(Math.round(x), Math.round(y));
          coreN++;
        }
      // Both layers come from the same prepared pixels on the same sampling grid: at the edge the result is the
      // background's own pixels; inside, ESRGAN's face (about 2 levels apart from classic's on this photo).
      expect(edge / edgeN, 'mean difference along the region edge').toBeLessThan(0.5);
      expect(core / coreN, 'mean difference inside the face').toBeGreaterThan(1);
    }
  });

  it('a photo without faces gets exactly the classic result', async () => {
    const p = await run(portrait, join(dir, 'no-face.png'));
    const c = await run(classic, join(dir, 'no-face.png'));
    expect(p.result.meta).toMatchObject({ faces: 0 });
    expect(p.result.applied).not.toHaveProperty('weight');
    expect((await raw(p.output)).data.equals((await raw(c.output)).data)).toBe(true);
  });

  it('onlyCenterFace restores one face; scale 1 keeps the size', async () => {
    const p = await run(portrait, join(dir, 'faces.png'), { onlyCenterFace: true, scale: 1, format: 'png' });
    expect(p.result.meta?.faces).toBe(1);
    expect(p.result.output.width).toBe(300);
  });
});
