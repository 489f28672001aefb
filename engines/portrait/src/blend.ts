/**
 * Putting restored faces back: the face region is grown by a margin, the ESRGAN result is colour-matched to the
 * background result there (the classic pipeline's local contrast shifts tones a little), and laid over it through a
 * feathered alpha mask that is 0 at the region's edge, so there is no edge to see.
 */
import type { FaceBox } from './detect.js';

export interface Region {
  left: number;
  top: number;
  width: number;
  height: number;
}

/** Margin added on each side of a detector box (fraction of its size): hair, ears and chin belong to the face. */
export const FACE_MARGIN = 0.3;

/** The region to restore around a face box, clamped to the image; undefined if it is too small to matter. */
export function faceRegion(box: FaceBox, width: number, height: number, minSide = 16): Region | undefined {
  const mx = box.width * FACE_MARGIN;
  const my = box.height * FACE_MARGIN;
  const left = Math.max(0, Math.floor(box.x - mx));
  const top = Math.max(0, Math.floor(box.y - my));
  const right = Math.min(width, Math.ceil(box.x + box.width + mx));
  const bottom = Math.min(height, Math.ceil(box.y + box.height + my));
  if (right - left < minSide || bottom - top < minSide) return undefined;
  return { left, top, width: right - left, height: bottom - top };
}

/**
 * Feathered mask, 0..1, width × height: 1 inside, a smoothstep ramp over `feather` px to 0 at every edge.
 * Edges that lie on the image border are not feathered (there is nothing to blend with there).
 */
export function featherMask(
  width: number,
  height: number,
  feather: number,
  open: { left?: boolean; top?: boolean; right?: boolean; bottom?: boolean } = {},
): Float32Array {
  const f = Math.max(1, feather);
  const ramp = (d: number): number => {
    const t = Math.min(1, Math.max(0, (d + 0.5) / f));
    return t * t * (3 - 2 * t);
  };
  const col = new Float32Array(width);
  for (let x = 0; x < width; x++) col[x] = Math.min(open.left ? 1 : ramp(x), open.right ? 1 : ramp(width - 1 - x));
  const mask = new Float32Array(width * height);
  for (let y = 0; y < height; y++) {
    const ry = Math.min(open.top ? 1 : ramp(y), open.bottom ? 1 : ramp(height - 1 - y));
    for (let x = 0; x < width; x++) mask[y * width + x] = ry * col[x]!;
  }
  return mask;
}

/** Per-channel mean/std transfer of `patch` towards `reference` (same size, RGB), gain clamped to 0.8..1.25. */
export function matchColour(patch: Uint8Array, reference: Uint8Array): void {
  const n = patch.length / 3;
  for (let c = 0; c < 3; c++) {
    let sp = 0,
      sr = 0,
      qp = 0,
      qr = 0;
    for (let i = c; i < patch.length; i += 3) {
      const p = patch[i]!;
      const r = reference[i]!;
      sp += p;
      sr += r;
      qp += p * p;
      qr += r * r;
    }
    const mp = sp / n;
    const mr = sr / n;
    const dp = Math.sqrt(Math.max(1e-6, qp / n - mp * mp));
    const dr = Math.sqrt(Math.max(1e-6, qr / n - mr * mr));
    const gain = Math.min(1.25, Math.max(0.8, dr / dp));
    for (let i = c; i < patch.length; i += 3) {
      const v = (patch[i]! - mp) * gain + mr;
      patch[i] = v <= 0 ? 0 : v >= 255 ? 255 : Math.round(v);
    }
  }
}

/** RGB patch + mask (× weight, × an optional alpha plane) → RGBA overlay for compositing "over" the background. */
export function overlay(patch: Uint8Array, mask: Float32Array, weight: number, alpha?: Uint8Array): Buffer {
  const n = mask.length;
  const out = Buffer.allocUnsafe(n * 4);
  for (let i = 0; i < n; i++) {
    out[i * 4] = patch[i * 3]!;
    out[i * 4 + 1] = patch[i * 3 + 1]!;
    out[i * 4 + 2] = patch[i * 3 + 2]!;
    const a = mask[i]! * weight * (alpha ? alpha[i]! / 255 : 1);
    out[i * 4 + 3] = Math.round(a * 255);
  }
  return out;
}
