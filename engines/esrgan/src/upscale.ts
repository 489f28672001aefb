import { setImmediate } from 'node:timers';
import type * as TF from '@tensorflow/tfjs';
import { abortError } from '@photoenhance/engine-protocol';
import type { Factor, ModelCache } from './models.js';
import type { Tf } from './runtime.js';
import { cropRgb, pasteResult, planTiles } from './tiles.js';

export interface RgbImage {
  /** Interleaved 8-bit RGB, row-major. */
  data: Uint8Array;
  width: number;
  height: number;
}

export interface TileSettings {
  /** Input tile edge in px (ESRGAN_TILE, default 96). */
  tile: number;
  /** Context around each tile in px (ESRGAN_TILE_PAD, default 12). */
  pad: number;
}

export interface UpscaleHooks {
  signal?: AbortSignal;
  /** After each tile: tiles done and total. */
  onTile?(done: number, total: number): void;
}

/**
 * Super-resolve an RGB image by `factor` with the ESRGAN model, tile by tile. Tensor memory is bounded by one padded
 * tile (every tensor is disposed inside tf.tidy or explicitly); the only buffers that grow with the photo are the 8-bit
 * input and output pixels (3 bytes a pixel). Checks the abort signal between tiles.
 */
export async function upscaleRgb(
  tf: Tf,
  models: ModelCache,
  img: RgbImage,
  factor: Factor,
  settings: TileSettings,
  hooks: UpscaleHooks = {},
): Promise<RgbImage> {
  const upscaler = await models.get(factor);
  const outW = img.width * factor;
  const outH = img.height * factor;
  const out = new Uint8Array(outW * outH * 3);
  const tiles = planTiles(img.width, img.height, settings.tile, settings.pad);
  let done = 0;
  for (const t of tiles) {
    // tfjs on WASM computes synchronously and execute() resolves in microtasks: without this macrotask turn, stdin
    // (and so a cancel or shutdown) would not be read until the whole photo is done.
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (hooks.signal?.aborted) throw abortError();
    const input = tf.tensor3d(cropRgb(img.data, img.width, t), [t.ph, t.pw, 3], 'int32');
    let result: TF.Tensor3D;
    try {
      result = await upscaler.execute(input, { output: 'tensor' });
    } finally {
      input.dispose();
    }
    try {
      const [rh, rw] = result.shape;
      if (rh !== t.ph * factor || rw !== t.pw * factor)
        throw new Error(`the model returned ${rw}x${rh} for a ${t.pw}x${t.ph} tile at x${factor}`);
      pasteResult(out, outW, result.dataSync() as Float32Array, t, factor);
    } finally {
      result.dispose();
    }
    hooks.onTile?.(++done, tiles.length);
  }
  return { data: out, width: outW, height: outH };
}
