/**
 * A small BMP decoder: sharp's bundled libvips reads no BMP, and the API accepts it.
 * Covers what photo tools write: uncompressed 1/4/8-bit palette, 16/24/32-bit, BI_BITFIELDS, top-down or bottom-up,
 * OS/2 core headers. RLE and embedded JPEG/PNG are refused with a BmpError, as are truncated files.
 */
export interface RawImage {
  data: Buffer;
  width: number;
  height: number;
  channels: 3 | 4;
}

export class BmpError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BmpError';
  }
}

/** Sanity bound on pixels; the gateway's MAX_PIXELS is far lower. */
const MAX_PIXELS = 1 << 28;

export function isBmp(head: Uint8Array): boolean {
  return head.length >= 2 && head[0] === 0x42 && head[1] === 0x4d;
}

interface Mask {
  mask: number;
  shift: number;
  max: number;
}

function mask(m: number): Mask | undefined {
  if (m === 0) return undefined;
  let shift = 0;
  while (((m >>> shift) & 1) === 0) shift++;
  return { mask: m >>> 0, shift, max: (m >>> 0) >>> shift };
}

const channel = (px: number, m: Mask): number =>
  m.max === 255 ? (px & m.mask) >>> m.shift : Math.round((((px & m.mask) >>> m.shift) * 255) / m.max);

/** Width and height from the header alone (no decoding), for cheap pixel-limit checks. */
export function bmpDimensions(head: Buffer): { width: number; height: number } {
  if (head.length < 26 || !isBmp(head)) throw new BmpError('not a BMP file (no "BM" header)');
  const dibSize = head.readUInt32LE(14);
  if (dibSize === 12) return { width: head.readUInt16LE(18), height: Math.abs(head.readInt16LE(20)) };
  if (dibSize >= 40 && head.length >= 26) return { width: head.readInt32LE(18), height: Math.abs(head.readInt32LE(22)) };
  throw new BmpError(`unsupported BMP header size ${dibSize}`);
}

/** Bytes of a BMP file that hold every header, mask and palette: enough for inspectBmp. */
export const BMP_HEADER_BYTES = 2048;

interface BmpLayout {
  width: number;
  height: number;
  topDown: boolean;
  bpp: number;
  dataOffset: number;
  stride: number;
  masks: { r: Mask; g: Mask; b: Mask; a: Mask | undefined } | undefined;
  palette: Uint8Array | undefined;
}

/**
 * Everything decodeBmp checks, from the headers and the file size alone: signature, header size, dimensions, bit
 * depth, compression, masks, palette and that the pixel rows fit in the file. Uncompressed pixel bytes cannot be
 * corrupt, so a BMP that passes this decodes. `head` holds at least the first BMP_HEADER_BYTES (or the whole file).
 */
function parseBmp(buf: Buffer, fileSize: number): BmpLayout {
  if (buf.length < 26 || !isBmp(buf)) throw new BmpError('not a BMP file (no "BM" header)');
  const dataOffset = buf.readUInt32LE(10);
  const dibSize = buf.readUInt32LE(14);
  let width: number;
  let rawHeight: number;
  let bpp: number;
  let compression = 0;
  let colorsUsed = 0;
  let paletteEntry = 4;
  if (dibSize === 12) {
    width = buf.readUInt16LE(18);
    rawHeight = buf.readInt16LE(20);
    bpp = buf.readUInt16LE(24);
    paletteEntry = 3;
  } else if (dibSize >= 40 && buf.length >= 14 + 40) {
    width = buf.readInt32LE(18);
    rawHeight = buf.readInt32LE(22);
    bpp = buf.readUInt16LE(28);
    compression = buf.readUInt32LE(30);
    colorsUsed = buf.readUInt32LE(46);
  } else {
    throw new BmpError(`unsupported BMP header size ${dibSize}`);
  }
  const height = Math.abs(rawHeight);
  const topDown = rawHeight < 0;
  if (width <= 0 || height === 0 || width * height > MAX_PIXELS) throw new BmpError(`unusable BMP dimensions ${width}x${rawHeight}`);
  if (compression !== 0 && compression !== 3 && compression !== 6) {
    const names: Record<number, string> = { 1: 'RLE8', 2: 'RLE4', 4: 'embedded JPEG', 5: 'embedded PNG' };
    throw new BmpError(`unsupported BMP compression ${names[compression] ?? compression}`);
  }
  if (![1, 4, 8, 16, 24, 32].includes(bpp)) throw new BmpError(`unsupported BMP bit depth ${bpp}`);

  // Channel masks: in the V2+ header, or right after a 40-byte header for BI_BITFIELDS.
  let masks: BmpLayout['masks'];
  let paletteOffset = 14 + dibSize;
  if (compression === 3 || compression === 6) {
    if (bpp !== 16 && bpp !== 32) throw new BmpError(`BI_BITFIELDS needs 16 or 32 bits per pixel, not ${bpp}`);
    const at = dibSize >= 52 ? 54 : 14 + dibSize;
    const hasAlpha = dibSize >= 56 || compression === 6;
    if (buf.length < at + (hasAlpha ? 16 : 12)) throw new BmpError('truncated BMP header');
    const r = mask(buf.readUInt32LE(at));
    const g = mask(buf.readUInt32LE(at + 4));
    const b = mask(buf.readUInt32LE(at + 8));
    if (!r || !g || !b) throw new BmpError('BMP colour mask is empty');
    masks = { r, g, b, a: hasAlpha ? mask(buf.readUInt32LE(at + 12)) : undefined };
    if (dibSize === 40) paletteOffset += compression === 6 ? 16 : 12;
  } else if (bpp === 16) {
    masks = { r: mask(0x7c00)!, g: mask(0x03e0)!, b: mask(0x001f)!, a: undefined };
  } else if (bpp === 32 && dibSize >= 56 && buf.length >= 70 && buf.readUInt32LE(66) !== 0) {
    // V4/V5 headers may declare an alpha mask even for BI_RGB.
    masks = { r: mask(0x00ff0000)!, g: mask(0x0000ff00)!, b: mask(0x000000ff)!, a: mask(buf.readUInt32LE(66)) };
  }

  let palette: Uint8Array | undefined;
  if (bpp <= 8) {
    const count = colorsUsed > 0 && colorsUsed <= 1 << bpp ? colorsUsed : 1 << bpp;
    if (Math.min(buf.length, fileSize) < paletteOffset + count * paletteEntry) throw new BmpError('truncated BMP palette');
    palette = new Uint8Array(count * 3);
    for (let i = 0; i < count; i++) {
      const at = paletteOffset + i * paletteEntry;
      palette[i * 3] = buf[at + 2]!;
      palette[i * 3 + 1] = buf[at + 1]!;
      palette[i * 3 + 2] = buf[at]!;
    }
  }

  const stride = Math.floor((bpp * width + 31) / 32) * 4;
  const rowBytes = Math.ceil((bpp * width) / 8);
  if (dataOffset + stride * (height - 1) + rowBytes > fileSize) {
    throw new BmpError(`truncated BMP: pixel data needs ${stride * height} bytes from offset ${dataOffset}, file has ${fileSize} bytes`);
  }
  return { width, height, topDown, bpp, dataOffset, stride, masks, palette };
}

/** Check a BMP without decoding it (see parseBmp): O(1), safe on an event loop. Throws BmpError. */
export function inspectBmp(head: Buffer, fileSize: number): { width: number; height: number } {
  const { width, height } = parseBmp(head, fileSize);
  return { width, height };
}

export function decodeBmp(buf: Buffer): RawImage {
  const { width, height, topDown, bpp, dataOffset, stride, masks, palette } = parseBmp(buf, buf.length);

  // 32-bit BI_RGB: the fourth byte is usually padding (0); treat it as alpha only if some pixel sets it.
  let alphaFromPadding = false;
  if (bpp === 32 && !masks) {
    for (let y = 0; y < height && !alphaFromPadding; y++) {
      const row = dataOffset + y * stride;
      for (let x = 0; x < width; x++) {
        if (buf[row + x * 4 + 3] !== 0) {
          alphaFromPadding = true;
          break;
        }
      }
    }
  }
  const channels: 3 | 4 = masks?.a !== undefined || alphaFromPadding ? 4 : 3;
  const out = Buffer.allocUnsafe(width * height * channels);

  for (let y = 0; y < height; y++) {
    const src = dataOffset + (topDown ? y : height - 1 - y) * stride;
    let o = y * width * channels;
    for (let x = 0; x < width; x++) {
      let r: number;
      let g: number;
      let b: number;
      let a = 255;
      if (palette) {
        const bitPos = x * bpp;
        const byte = buf[src + (bitPos >> 3)]!;
        const idx = bpp === 8 ? byte : (byte >> (8 - bpp - (bitPos & 7))) & ((1 << bpp) - 1);
        const p = Math.min(idx, palette.length / 3 - 1) * 3;
        r = palette[p]!;
        g = palette[p + 1]!;
        b = palette[p + 2]!;
      } else if (masks) {
        const px = bpp === 16 ? buf.readUInt16LE(src + x * 2) : buf.readUInt32LE(src + x * 4);
        r = channel(px, masks.r);
        g = channel(px, masks.g);
        b = channel(px, masks.b);
        if (masks.a) a = channel(px, masks.a);
      } else {
        const at = src + x * (bpp / 8);
        b = buf[at]!;
        g = buf[at + 1]!;
        r = buf[at + 2]!;
        if (alphaFromPadding) a = buf[at + 3]!;
      }
      out[o++] = r;
      out[o++] = g;
      out[o++] = b;
      if (channels === 4) out[o++] = a;
    }
  }
  return { data: out, width, height, channels };
}

/** Write a 24-bit bottom-up BMP (used by tests to make BMP inputs, since sharp cannot write BMP). */
export function encodeBmp24(img: { data: Buffer; width: number; height: number; channels: number }): Buffer {
  const { width, height, channels, data } = img;
  const stride = Math.floor((24 * width + 31) / 32) * 4;
  const out = Buffer.alloc(54 + stride * height);
  out.write('BM', 0, 'latin1');
  out.writeUInt32LE(out.length, 2);
  out.writeUInt32LE(54, 10);
  out.writeUInt32LE(40, 14);
  out.writeInt32LE(width, 18);
  out.writeInt32LE(height, 22);
  out.writeUInt16LE(1, 26);
  out.writeUInt16LE(24, 28);
  out.writeUInt32LE(stride * height, 34);
  for (let y = 0; y < height; y++) {
    const row = 54 + (height - 1 - y) * stride;
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * channels;
      out[row + x * 3] = data[i + 2]!;
      out[row + x * 3 + 1] = data[i + 1]!;
      out[row + x * 3 + 2] = data[i]!;
    }
  }
  return out;
}
