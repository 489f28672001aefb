import { open } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import { BMP_HEADER_BYTES, BmpError, bmpDimensions, inspectBmp } from './bmp.js';

/**
 * Structural integrity checks: walk a file's container structure (JPEG markers to EOI, PNG chunks with the CRC of the
 * critical ones, WebP RIFF chunk sizes, BMP headers against the file size) without decoding pixels. This refuses what
 * an upload most often is when it is bad (truncated, cut and pasted, bytes flipped in transit) at a fraction of a
 * decode's cost. It cannot see corruption inside compressed pixel data that keeps the structure intact (a flipped
 * bit in JPEG entropy data or a VP8 frame): the engine's decode fails such a job later, which is what `decode` mode
 * (a full decode at upload) prevents.
 */
export class StructureError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StructureError';
  }
}

/** Formats with a structural walker. */
export type StructuralFormat = 'jpeg' | 'png' | 'webp' | 'bmp';

export interface Dimensions {
  width: number;
  height: number;
}

/** Random access to the bytes of a file or buffer. `read` returns fewer bytes only at the end of the data. */
export interface ByteReader {
  readonly size: number;
  read(offset: number, length: number): Promise<Buffer>;
}

export interface StructureOptions {
  /**
   * Called with the stored (not EXIF-oriented) dimensions as soon as the header gives them, before the rest is
   * walked: a limit check that throws here refuses a bomb without reading it.
   */
  onHeader?: (dims: Dimensions) => void;
}

export function bufferReader(buf: Buffer): ByteReader {
  return { size: buf.length, read: async (offset, length) => buf.subarray(offset, offset + length) };
}

/** Blocks read from the file and kept one at a time: a small upload is one read; a large one is never held whole. */
const BLOCK = 256 * 1024;

/**
 * Walk the structure of `buf` (or, with `checkFileStructure`, a file). Returns the dimensions as displayed (EXIF
 * orientation 5–8 swaps them, as sharp's autoOrient does). Throws StructureError.
 */
export async function checkStructure(reader: ByteReader, format: StructuralFormat, opts: StructureOptions = {}): Promise<Dimensions> {
  switch (format) {
    case 'jpeg':
      return walkJpeg(reader, opts);
    case 'png':
      return walkPng(reader, opts);
    case 'webp':
      return walkWebp(reader, opts);
    case 'bmp': {
      const head = await reader.read(0, BMP_HEADER_BYTES);
      try {
        // Dimensions first, so that a header claiming a huge picture meets the caller's limit before anything else.
        opts.onHeader?.(bmpDimensions(head));
        return inspectBmp(head, reader.size);
      } catch (err) {
        if (err instanceof BmpError) throw new StructureError(err.message);
        throw err;
      }
    }
  }
}

export async function checkFileStructure(path: string, format: StructuralFormat, opts: StructureOptions = {}): Promise<Dimensions> {
  const fh = await open(path, 'r');
  try {
    const { size } = await fh.stat();
    let block: { at: number; data: Buffer } | undefined;
    const load = async (at: number): Promise<Buffer> => {
      const data = Buffer.allocUnsafe(Math.min(BLOCK, size - at));
      const { bytesRead } = await fh.read(data, 0, data.length, at);
      block = { at, data: data.subarray(0, bytesRead) };
      return block.data;
    };
    const reader: ByteReader = {
      size,
      async read(offset, length) {
        const end = Math.min(size, offset + length);
        if (offset >= end) return Buffer.alloc(0);
        if (block && offset >= block.at && end <= block.at + block.data.length)
          return block.data.subarray(offset - block.at, end - block.at);
        if (end - offset > BLOCK) {
          const out = Buffer.allocUnsafe(end - offset);
          const { bytesRead } = await fh.read(out, 0, out.length, offset);
          return out.subarray(0, bytesRead);
        }
        const data = await load(offset);
        return data.subarray(0, end - offset);
      },
    };
    return await checkStructure(reader, format, opts);
  } finally {
    await fh.close();
  }
}

async function exact(r: ByteReader, offset: number, length: number, what: string): Promise<Buffer> {
  const b = await r.read(offset, length);
  if (b.length < length) throw new StructureError(`truncated ${what}: the file ends at byte ${r.size}, ${offset + length} needed`);
  return b;
}

// --- JPEG ---------------------------------------------------------------------------------------------------------

const SOF = new Set([0xc0, 0xc1, 0xc2, 0xc3, 0xc5, 0xc6, 0xc7, 0xc9, 0xca, 0xcb, 0xcd, 0xce, 0xcf]);
/** Entropy data is scanned this much at a time. */
const SCAN_STEP = 64 * 1024;

/**
 * SOI, then segments (each with its length) up to SOS, the entropy-coded data after it up to the next marker (0xFF
 * followed by neither 0x00 stuffing nor a restart marker), more segments and scans (progressive), then EOI. Bytes
 * after EOI are allowed (cameras append data).
 */
async function walkJpeg(r: ByteReader, opts: StructureOptions): Promise<Dimensions> {
  const soi = await exact(r, 0, 2, 'JPEG');
  if (soi[0] !== 0xff || soi[1] !== 0xd8) throw new StructureError('not a JPEG (no SOI marker)');
  let pos = 2;
  let dims: Dimensions | undefined;
  let orientation = 1;
  let scans = 0;
  for (;;) {
    const m = await exact(r, pos, 2, 'JPEG marker');
    if (m[0] !== 0xff) throw new StructureError(`corrupt JPEG: expected a marker at byte ${pos}, found 0x${m[0]!.toString(16)}`);
    let marker = m[1]!;
    // Any number of 0xFF fill bytes may precede a marker.
    while (marker === 0xff) {
      pos++;
      marker = (await exact(r, pos + 1, 1, 'JPEG marker'))[0]!;
    }
    pos += 2;
    if (marker === 0xd9) break;
    if (marker === 0xd8 || marker === 0x00)
      throw new StructureError(`corrupt JPEG: unexpected marker 0xFF${marker.toString(16).padStart(2, '0')} at byte ${pos - 2}`);
    if ((marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) continue;
    const length = (await exact(r, pos, 2, 'JPEG segment length')).readUInt16BE(0);
    if (length < 2) throw new StructureError(`corrupt JPEG: segment 0xFF${marker.toString(16)} has length ${length}`);
    const end = pos + length;
    if (end > r.size)
      throw new StructureError(
        `truncated JPEG: segment 0xFF${marker.toString(16)} at byte ${pos - 2} needs ${length} bytes, the file ends at ${r.size}`,
      );
    if (SOF.has(marker)) {
      const sof = await exact(r, pos + 2, 6, 'JPEG frame header');
      const height = sof.readUInt16BE(1);
      const width = sof.readUInt16BE(3);
      const components = sof[5]!;
      if (width === 0 || height === 0)
        throw new StructureError(`unsupported JPEG: frame of ${width}×${height} (a DNL height is not accepted)`);
      if (components === 0 || length !== 8 + 3 * components)
        throw new StructureError(`corrupt JPEG: frame header of length ${length} for ${components} components`);
      if (dims) throw new StructureError('corrupt JPEG: more than one frame header');
      dims = { width, height };
      opts.onHeader?.(dims);
    } else if (marker === 0xe1 && length > 8 && !dims) {
      const app1 = await exact(r, pos + 2, length - 2, 'JPEG APP1 segment');
      if (app1.subarray(0, 6).toString('latin1') === 'Exif\0\0') orientation = exifOrientation(app1.subarray(6)) ?? orientation;
    } else if (marker === 0xda) {
      if (!dims) throw new StructureError('corrupt JPEG: scan before the frame header');
      scans++;
      pos = await skipEntropyData(r, end);
      continue;
    }
    pos = end;
  }
  if (!dims) throw new StructureError('corrupt JPEG: no frame header before EOI');
  if (scans === 0) throw new StructureError('corrupt JPEG: no image data before EOI');
  return orient(dims, orientation);
}

/** From the first byte of entropy-coded data, the offset of the marker that ends it. */
async function skipEntropyData(r: ByteReader, from: number): Promise<number> {
  let pos = from;
  for (;;) {
    const chunk = await r.read(pos, SCAN_STEP + 1);
    if (chunk.length === 0) throw new StructureError(`truncated JPEG: the image data stops at byte ${r.size} without an EOI marker`);
    // The last byte is only the look-ahead for a 0xFF at the end of this step.
    const stop = Math.min(chunk.length, SCAN_STEP);
    let i = chunk.indexOf(0xff, 0);
    while (i >= 0 && i < stop) {
      if (i + 1 >= chunk.length) throw new StructureError(`truncated JPEG: the image data stops at byte ${r.size} without an EOI marker`);
      const next = chunk[i + 1]!;
      if (next !== 0x00 && next !== 0xff && !(next >= 0xd0 && next <= 0xd7)) return pos + i;
      i = chunk.indexOf(0xff, i + (next === 0xff ? 1 : 2));
    }
    if (chunk.length <= SCAN_STEP) throw new StructureError(`truncated JPEG: the image data stops at byte ${r.size} without an EOI marker`);
    pos += SCAN_STEP;
  }
}

// --- PNG ----------------------------------------------------------------------------------------------------------

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const CRITICAL = new Set(['IHDR', 'PLTE', 'IDAT', 'IEND']);
const PNG_DEPTHS: Record<number, number[]> = { 0: [1, 2, 4, 8, 16], 2: [8, 16], 3: [1, 2, 4, 8], 4: [8, 16], 6: [8, 16] };
/** CRCs of large IDAT chunks are computed over this much at a time (crc32 continues from the previous value). */
const CRC_STEP = 256 * 1024;

/**
 * Signature, IHDR first (valid depth and colour type), chunk lengths within the file, CRCs of the critical chunks
 * (libpng refuses those too; ancillary CRC errors it only warns about), PLTE for palette images, consecutive IDAT
 * chunks, IEND. Bytes after IEND are ignored, as decoders do.
 */
async function walkPng(r: ByteReader, opts: StructureOptions): Promise<Dimensions> {
  const sig = await exact(r, 0, 8, 'PNG signature');
  if (!sig.equals(PNG_SIGNATURE)) throw new StructureError('not a PNG (bad signature)');
  let pos = 8;
  let dims: Dimensions | undefined;
  let colourType = -1;
  let palette = false;
  let idat: 'none' | 'in' | 'after' = 'none';
  let orientation = 1;
  for (;;) {
    const head = await exact(r, pos, 8, 'PNG chunk header');
    const length = head.readUInt32BE(0);
    const type = head.subarray(4, 8).toString('latin1');
    if (!/^[A-Za-z]{4}$/.test(type) || length > 0x7fffffff) throw new StructureError(`corrupt PNG: bad chunk header at byte ${pos}`);
    const dataAt = pos + 8;
    const end = dataAt + length + 4;
    if (end > r.size)
      throw new StructureError(`truncated PNG: chunk ${type} at byte ${pos} needs ${length + 12} bytes, the file ends at ${r.size}`);
    if (pos === 8 && type !== 'IHDR') throw new StructureError('corrupt PNG: the first chunk is not IHDR');
    if (CRITICAL.has(type)) {
      let crc = crc32(head.subarray(4, 8));
      for (let at = dataAt; at < dataAt + length; at += CRC_STEP)
        crc = crc32(await exact(r, at, Math.min(CRC_STEP, dataAt + length - at), `PNG chunk ${type}`), crc);
      const stored = (await exact(r, dataAt + length, 4, 'PNG chunk CRC')).readUInt32BE(0);
      if (stored !== crc >>> 0) throw new StructureError(`corrupt PNG: CRC mismatch in chunk ${type} at byte ${pos}`);
    }
    if (type === 'IDAT') {
      if (idat === 'after') throw new StructureError('corrupt PNG: IDAT chunks are not consecutive');
      if (colourType === 3 && !palette) throw new StructureError('corrupt PNG: palette image without PLTE before IDAT');
      idat = 'in';
    } else if (idat === 'in') {
      idat = 'after';
    }
    if (type === 'IHDR') {
      if (pos !== 8) throw new StructureError('corrupt PNG: more than one IHDR');
      if (length !== 13) throw new StructureError(`corrupt PNG: IHDR of length ${length}`);
      const h = await exact(r, dataAt, 13, 'PNG IHDR');
      const width = h.readUInt32BE(0);
      const height = h.readUInt32BE(4);
      const depth = h[8]!;
      colourType = h[9]!;
      if (width === 0 || height === 0 || width > 0x7fffffff || height > 0x7fffffff)
        throw new StructureError(`corrupt PNG: dimensions ${width}×${height}`);
      if (!PNG_DEPTHS[colourType]?.includes(depth))
        throw new StructureError(`corrupt PNG: bit depth ${depth} with colour type ${colourType}`);
      if (h[10] !== 0 || h[11] !== 0 || h[12]! > 1)
        throw new StructureError('corrupt PNG: unknown compression, filter or interlace method');
      dims = { width, height };
      opts.onHeader?.(dims);
    } else if (type === 'PLTE') {
      if (length === 0 || length % 3 !== 0 || length > 768) throw new StructureError(`corrupt PNG: PLTE of length ${length}`);
      palette = true;
    } else if (type === 'eXIf' && idat === 'none' && length > 8) {
      orientation = exifOrientation(await exact(r, dataAt, length, 'PNG eXIf')) ?? orientation;
    } else if (type === 'IEND') {
      break;
    }
    pos = end;
  }
  if (idat === 'none') throw new StructureError('corrupt PNG: no IDAT chunk');
  return orient(dims!, orientation);
}

// --- WebP ---------------------------------------------------------------------------------------------------------

/**
 * RIFF header (its size within the file), then chunks whose sizes (padded to even) stay within the RIFF size: a
 * simple file is one VP8 or VP8L chunk (frame tag and signature checked, dimensions read); an extended one starts
 * with VP8X (canvas dimensions) and holds image data (VP8/VP8L, or ANMF frames).
 */
async function walkWebp(r: ByteReader, opts: StructureOptions): Promise<Dimensions> {
  const head = await exact(r, 0, 12, 'WebP header');
  if (head.toString('latin1', 0, 4) !== 'RIFF' || head.toString('latin1', 8, 12) !== 'WEBP')
    throw new StructureError('not a WebP (no RIFF/WEBP header)');
  const riffSize = head.readUInt32LE(4);
  const riffEnd = 8 + riffSize;
  if (riffSize < 4 + 8) throw new StructureError(`corrupt WebP: RIFF size ${riffSize}`);
  let pos = 12;
  let dims: Dimensions | undefined;
  let hasImage = false;
  let extended = false;
  let orientation = 1;
  while (pos < riffEnd) {
    const ch = await exact(r, pos, 8, 'WebP chunk header');
    const type = ch.toString('latin1', 0, 4);
    const size = ch.readUInt32LE(4);
    const dataAt = pos + 8;
    const end = dataAt + size + (size & 1);
    if (end > riffEnd)
      throw new StructureError(
        `corrupt WebP: chunk ${JSON.stringify(type)} at byte ${pos} (${size} bytes) runs past the RIFF end at ${riffEnd}`,
      );
    if (pos === 12 && type !== 'VP8 ' && type !== 'VP8L' && type !== 'VP8X')
      throw new StructureError(`corrupt WebP: first chunk is ${JSON.stringify(type)}, not VP8, VP8L or VP8X`);
    if (type === 'VP8X') {
      if (pos !== 12 || size < 10) throw new StructureError('corrupt WebP: misplaced or short VP8X chunk');
      const x = await exact(r, dataAt, 10, 'WebP VP8X');
      dims = { width: x.readUIntLE(4, 3) + 1, height: x.readUIntLE(7, 3) + 1 };
      extended = true;
      opts.onHeader?.(dims);
    } else if (type === 'VP8 ') {
      if (size < 10) throw new StructureError('corrupt WebP: short VP8 chunk');
      const f = await exact(r, dataAt, 10, 'WebP VP8 frame header');
      const tag = f.readUIntLE(0, 3);
      const firstPartition = tag >>> 5;
      if ((tag & 1) !== 0) throw new StructureError('corrupt WebP: VP8 frame is not a key frame');
      if (f[3] !== 0x9d || f[4] !== 0x01 || f[5] !== 0x2a) throw new StructureError('corrupt WebP: VP8 start code missing');
      if (10 + firstPartition > size)
        throw new StructureError(`corrupt WebP: VP8 first partition of ${firstPartition} bytes in a ${size}-byte chunk`);
      const own = { width: f.readUInt16LE(6) & 0x3fff, height: f.readUInt16LE(8) & 0x3fff };
      if (own.width === 0 || own.height === 0) throw new StructureError('corrupt WebP: VP8 frame of zero size');
      if (!dims) opts.onHeader?.(own);
      dims ??= own;
      hasImage = true;
    } else if (type === 'VP8L') {
      if (size < 5) throw new StructureError('corrupt WebP: short VP8L chunk');
      const l = await exact(r, dataAt, 5, 'WebP VP8L header');
      if (l[0] !== 0x2f) throw new StructureError('corrupt WebP: VP8L signature missing');
      const bits = l.readUInt32LE(1);
      const own = { width: (bits & 0x3fff) + 1, height: ((bits >>> 14) & 0x3fff) + 1 };
      if (bits >>> 29 !== 0) throw new StructureError('corrupt WebP: unknown VP8L version');
      if (!dims) opts.onHeader?.(own);
      dims ??= own;
      hasImage = true;
    } else if (type === 'ANMF') {
      hasImage = true;
    } else if (type === 'EXIF' && size > 8) {
      orientation = exifOrientation(await exact(r, dataAt, size, 'WebP EXIF')) ?? orientation;
    }
    // Checked after the first chunk, so that its dimensions reach onHeader first (a bomb is refused as one).
    if (riffEnd > r.size) throw new StructureError(`truncated WebP: the RIFF header declares ${riffEnd} bytes, the file has ${r.size}`);
    if (!extended && hasImage) break;
    pos = end;
  }
  if (!dims || !hasImage) throw new StructureError('corrupt WebP: no image data');
  return orient(dims, orientation);
}

// --- EXIF ---------------------------------------------------------------------------------------------------------

/** The Orientation tag (0x0112) of IFD0 in a TIFF-structured EXIF block, if present and sane. */
export function exifOrientation(block: Buffer): number | undefined {
  // WebP and PNG writers differ on whether the JPEG-style "Exif\0\0" prefix is kept.
  const tiff = block.toString('latin1', 0, 6) === 'Exif\0\0' ? block.subarray(6) : block;
  if (tiff.length < 8) return undefined;
  const order = tiff.toString('latin1', 0, 2);
  if (order !== 'II' && order !== 'MM') return undefined;
  const le = order === 'II';
  const u16 = (at: number): number => (le ? tiff.readUInt16LE(at) : tiff.readUInt16BE(at));
  const u32 = (at: number): number => (le ? tiff.readUInt32LE(at) : tiff.readUInt32BE(at));
  if (u16(2) !== 42) return undefined;
  const ifd = u32(4);
  if (ifd + 2 > tiff.length) return undefined;
  const count = u16(ifd);
  for (let i = 0; i < count; i++) {
    const at = ifd + 2 + i * 12;
    if (at + 12 > tiff.length) return undefined;
    if (u16(at) === 0x0112 && u16(at + 2) === 3) {
      const v = u16(at + 8);
      return v >= 1 && v <= 8 ? v : undefined;
    }
  }
  return undefined;
}

/** Orientations 5–8 turn the picture a quarter: width and height swap, as sharp's autoOrient reports them. */
function orient(d: Dimensions, orientation: number): Dimensions {
  return orientation >= 5 ? { width: d.height, height: d.width } : d;
}
