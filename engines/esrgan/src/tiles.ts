/**
 * Tiling: the image is cut into `tile`-px squares, each run with `pad` px of real neighbouring pixels around it (so the
 * network sees context across the cut), and only the tile's own part of the result is kept. Memory per step depends on
 * the tile, never on the photo; the seams are invisible because every output pixel was computed with context.
 */
export interface Tile {
  /** The tile's own region in the input. */
  x: number;
  y: number;
  w: number;
  h: number;
  /** The region actually run (the tile plus padding, clamped to the image). */
  px: number;
  py: number;
  pw: number;
  ph: number;
}

export function planTiles(width: number, height: number, tile: number, pad: number): Tile[] {
  if (!(tile >= 1) || !(pad >= 0)) throw new RangeError(`tile must be >= 1 and pad >= 0; received ${tile}, ${pad}`);
  const tiles: Tile[] = [];
  for (let y = 0; y < height; y += tile) {
    for (let x = 0; x < width; x += tile) {
      const w = Math.min(tile, width - x);
      const h = Math.min(tile, height - y);
      const px = Math.max(0, x - pad);
      const py = Math.max(0, y - pad);
      tiles.push({ x, y, w, h, px, py, pw: Math.min(width, x + w + pad) - px, ph: Math.min(height, y + h + pad) - py });
    }
  }
  return tiles;
}

/** Copy the padded region of an interleaved RGB image into a new Int32Array (what tf.tensor3d takes as int32). */
export function cropRgb(rgb: Uint8Array, width: number, t: Pick<Tile, 'px' | 'py' | 'pw' | 'ph'>): Int32Array {
  const out = new Int32Array(t.pw * t.ph * 3);
  for (let row = 0; row < t.ph; row++) {
    const src = ((t.py + row) * width + t.px) * 3;
    const dst = row * t.pw * 3;
    for (let i = 0; i < t.pw * 3; i++) out[dst + i] = rgb[src + i]!;
  }
  return out;
}

/**
 * Write the tile's own part of a model result (float RGB of the padded region × factor) into the output image,
 * rounded and clamped to 0..255.
 */
export function pasteResult(
  out: Uint8Array,
  outWidth: number,
  result: Float32Array | Int32Array | Uint8Array,
  t: Tile,
  factor: number,
): void {
  const rw = t.pw * factor;
  const ox = (t.x - t.px) * factor;
  const oy = (t.y - t.py) * factor;
  const w = t.w * factor;
  for (let row = 0; row < t.h * factor; row++) {
    const src = ((oy + row) * rw + ox) * 3;
    const dst = ((t.y * factor + row) * outWidth + t.x * factor) * 3;
    for (let i = 0; i < w * 3; i++) {
      const v = result[src + i]!;
      out[dst + i] = v <= 0 ? 0 : v >= 255 ? 255 : Math.round(v);
    }
  }
}
