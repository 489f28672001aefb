/**
 * Reading and writing pixels for the neural engines: decode to oriented 8-bit sRGB with the alpha channel apart
 * (the models take RGB only), and encode exactly job.output in the requested format.
 */
import sharp from 'sharp';
import type { OutputFormat } from '@photoenhance/contracts';
import { decodeFailure, openInput, upscaleLanczos } from '@photoenhance/engine-classic';
import type { RgbImage } from './upscale.js';

export interface DecodedImage {
  rgb: RgbImage;
  /** 8-bit alpha plane (width × height) when the input has transparency. */
  alpha?: Uint8Array;
}

/** Decode an input file. Missing → INPUT_MISSING; undecodable → IMAGE_UNREADABLE (both not retryable). */
export async function decodeInput(input: string): Promise<DecodedImage> {
  const src = await openInput(input);
  try {
    const { data, info } = await src.toColourspace('srgb').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    return split(data, info.width, info.height, info.channels);
  } catch (err) {
    throw decodeFailure(err);
  }
}

/** Interleaved 1–4 channel pixels → RGB plus an optional alpha plane. */
function split(data: Buffer, width: number, height: number, channels: number): DecodedImage {
  const n = width * height;
  if (channels === 3) return { rgb: { data: new Uint8Array(data.buffer, data.byteOffset, n * 3), width, height } };
  const rgb = new Uint8Array(n * 3);
  const hasAlpha = channels === 2 || channels === 4;
  const alpha = hasAlpha ? new Uint8Array(n) : undefined;
  const colour = channels >= 3;
  for (let i = 0, p = 0; i < n; i++, p += channels) {
    rgb[i * 3] = data[p]!;
    rgb[i * 3 + 1] = data[colour ? p + 1 : p]!;
    rgb[i * 3 + 2] = data[colour ? p + 2 : p]!;
    if (alpha) alpha[i] = data[p + channels - 1]!;
  }
  return { rgb: { data: rgb, width, height }, ...(alpha ? { alpha } : {}) };
}

/**
 * Resize an alpha plane (Lanczos-3); the models only see RGB, so transparency is scaled classically. Integer upscales
 * go through the classic engine's Lanczos on the pixel-centre grid, as the model's RGB is: sharp's resize would put
 * the alpha edge half an output pixel off the colour edge (engines/classic/src/upscale.ts says why).
 */
export async function resizeAlpha(alpha: Uint8Array, width: number, height: number, toW: number, toH: number): Promise<Uint8Array> {
  if (width === toW && height === toH) return alpha;
  const k = toW / width;
  if (Number.isInteger(k) && k > 1 && toH === height * k) return upscaleLanczos({ data: alpha, width, height, channels: 1 }, k).data;
  const out = await sharp(alpha, { raw: { width, height, channels: 1 } })
    .resize(toW, toH, { kernel: 'lanczos3' })
    .extractChannel(0)
    .raw()
    .toBuffer();
  if (out.length !== toW * toH) throw new Error(`alpha resize returned ${out.length} bytes for ${toW}x${toH}`);
  return new Uint8Array(out.buffer, out.byteOffset, out.length);
}

/** Interleave RGB and an alpha plane into RGBA. */
export function withAlpha(rgb: RgbImage, alpha: Uint8Array): Buffer {
  const n = rgb.width * rgb.height;
  const out = Buffer.allocUnsafe(n * 4);
  for (let i = 0; i < n; i++) {
    out[i * 4] = rgb.data[i * 3]!;
    out[i * 4 + 1] = rgb.data[i * 3 + 1]!;
    out[i * 4 + 2] = rgb.data[i * 3 + 2]!;
    out[i * 4 + 3] = alpha[i]!;
  }
  return out;
}

/**
 * Encode pixels to exactly `output`: optional resize to `size` (scale 1), PNG lossless, JPEG/WebP at `quality`;
 * JPEG flattens transparency onto white; no metadata is copied.
 */
export async function encodeOutput(
  img: RgbImage,
  alpha: Uint8Array | undefined,
  output: string,
  format: OutputFormat,
  quality: number,
  size?: { width: number; height: number },
): Promise<{ width: number; height: number; bytes: number }> {
  const raw = alpha ? withAlpha(img, alpha) : Buffer.from(img.data.buffer, img.data.byteOffset, img.data.byteLength);
  let s = sharp(raw, { raw: { width: img.width, height: img.height, channels: alpha ? 4 : 3 } });
  if (size && (size.width !== img.width || size.height !== img.height)) s = s.resize(size.width, size.height, { kernel: 'lanczos3' });
  if (format === 'jpeg') s = (alpha ? s.flatten({ background: '#ffffff' }) : s).jpeg({ quality });
  else if (format === 'webp') s = s.webp({ quality });
  else s = s.png({ compressionLevel: 6 });
  const info = await s.toFile(output);
  return { width: info.width, height: info.height, bytes: info.size };
}
