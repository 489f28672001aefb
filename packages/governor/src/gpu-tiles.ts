import type { EngineProcessState, GpuInfo, HostGpus } from '@photoenhance/contracts';
import { BYTES } from './child-failure.js';

/**
 * GPU memory of GFPGAN's RealESRGAN x2plus background upsampler, modelled on the figures measured on an H200 (fp16,
 * BRIEF section 4): untiled 1280x960 2.5 GiB, 2000x1500 6.2 GiB, 4000x3000 24.5 GiB; with 400 px tiles 0.42 / 0.47 /
 * 0.72 GiB. Three terms reproduce all six within 1.5 %: the weights, the whole image in and out (Real-ESRGAN moves the
 * whole image to the GPU before tiling, and keeps a x2 output there), and one padded tile's activations.
 */
export const BG_MODEL = {
  weightsBytes: 0.03 * BYTES.GiB,
  /** fp16 input (3 x 2 B) + x2 output (4 px x 3 x 2 B) per input pixel. */
  ioBytesPerPixel: 30,
  /** Activations per (padded) input pixel, fp16. */
  activationBytesPerPixel: 2150,
  tilePad: 10,
} as const;

/** Even tiles only: basicsr's pixel_unshuffle (scale 2) asserts even sizes. 64 is the adapter's retry minimum. */
export const MIN_AUTO_TILE = 64;
export const MAX_AUTO_TILE = 1024;

/** Expected GPU bytes for a width x height photo with this tile (0 = untiled); fp32 (--no-half) doubles it. */
export function bgUpsamplerGpuBytes(width: number, height: number, tile: number, half = true): number {
  const m = BG_MODEL;
  const px = width * height;
  const padded = tile + 2 * m.tilePad;
  // One padded tile at a time (clipped to the image); a tile as large as the image is the whole image.
  const activations = tile > 0 && tile < Math.max(width, height) ? Math.min(padded, width) * Math.min(padded, height) : px;
  const bytes = m.weightsBytes + m.ioBytesPerPixel * px + m.activationBytesPerPixel * activations;
  return Math.round(half ? bytes : bytes * 2);
}

export interface TileChoice {
  /** 0 = no tiling (the whole image fits), else an even tile size. */
  tile: number;
  expectedBytes: number;
  budgetBytes: number;
}

/**
 * The largest background tile that fits in `freeBytes` with `headroom` (a fraction kept free, default 0.2): untiled
 * when the whole image fits, else the largest even tile from 1024 down to 64. Undefined when not even a 64 px tile
 * fits (the whole image alone may not: Real-ESRGAN puts it on the GPU before tiling).
 */
export function chooseBgTile(
  freeBytes: number,
  width: number,
  height: number,
  opts: { headroom?: number; half?: boolean } = {},
): TileChoice | undefined {
  const budget = Math.floor(freeBytes * (1 - (opts.headroom ?? 0.2)));
  const half = opts.half ?? true;
  const whole = bgUpsamplerGpuBytes(width, height, 0, half);
  if (whole <= budget) return { tile: 0, expectedBytes: whole, budgetBytes: budget };
  for (let tile = MAX_AUTO_TILE; tile >= MIN_AUTO_TILE; tile -= 2) {
    const need = bgUpsamplerGpuBytes(width, height, tile, half);
    if (need <= budget) return { tile, expectedBytes: need, budgetBytes: budget };
  }
  return undefined;
}

/** How a job's background tile was chosen when it left bgTile unset (recorded in the result's meta). */
export interface BgTileChoice {
  bgTile: number;
  /** gpu: sized for the GPU's free memory; no-gpu: no GPU figures for this engine, FALLBACK_BG_TILE. */
  basis: 'gpu' | 'no-gpu';
  /** The GPU it was sized for, its free bytes then, what the tile is expected to take and the budget (free less headroom). */
  gpu?: number;
  freeBytes?: number;
  expectedBytes?: number;
  budgetBytes?: number;
  /** Not even a 64 px tile fits the budget: the smallest is tried (the engine's OOM retry is the last resort). */
  tight?: true;
}

/**
 * The background tile for a job that left bgTile unset, from the governor's last GPU sample: sized for the GPU the
 * job will run on — the least free GPU among those holding this engine's processes (any of them may take the job),
 * else the GPU a new engine would be placed on (most free among those it may use). Without GPU figures for this
 * engine (no GPU, no driver, governance off, a non-GPU engine): `fallback`.
 */
export function autoBgTile(
  p: {
    gpu: HostGpus | undefined;
    processes: readonly EngineProcessState[];
    profile: string;
    gpus: number[] | 'all' | undefined;
    width: number;
    height: number;
    fallback: number;
  },
  opts: { headroom?: number; half?: boolean } = {},
): BgTileChoice {
  const sampled = p.gpu?.state === 'on' ? p.gpu.gpus : [];
  const pinned = new Set(p.processes.filter((x) => x.profile === p.profile && x.gpu).map((x) => x.gpu!.uuid));
  const allowed = p.gpus === undefined ? [] : sampled.filter((g) => p.gpus === 'all' || p.gpus!.includes(g.index));
  const held = sampled.filter((g) => pinned.has(g.uuid));
  const target =
    held.length > 0
      ? held.reduce((a, b) => (b.freeBytes < a.freeBytes ? b : a))
      : allowed.reduce<GpuInfo | undefined>((a, b) => (!a || b.freeBytes > a.freeBytes ? b : a), undefined);
  if (!target) return { bgTile: p.fallback, basis: 'no-gpu' };
  const c = chooseBgTile(target.freeBytes, p.width, p.height, opts);
  const figures = { gpu: target.index, freeBytes: target.freeBytes };
  if (!c)
    return {
      bgTile: MIN_AUTO_TILE,
      basis: 'gpu',
      ...figures,
      expectedBytes: bgUpsamplerGpuBytes(p.width, p.height, MIN_AUTO_TILE, opts.half ?? true),
      tight: true,
    };
  return { bgTile: c.tile, basis: 'gpu', ...figures, expectedBytes: c.expectedBytes, budgetBytes: c.budgetBytes };
}
