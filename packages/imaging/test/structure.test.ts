import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { crc32 } from 'node:zlib';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StructureError, bufferReader, checkFileStructure, checkStructure, encodeBmp24, type StructuralFormat } from '../src/index.js';

/** A real photo (MIT-licensed sample of @vladmandic/face-api), encoded by sharp into each format. */
const photo = join(dirname(createRequire(import.meta.url).resolve('@vladmandic/face-api/package.json')), 'demo', 'sample2.jpg');

const check = (b: Buffer, f: StructuralFormat): ReturnType<typeof checkStructure> => checkStructure(bufferReader(b), f);
const refused = async (b: Buffer, f: StructuralFormat, message: RegExp): Promise<void> => {
  await expect(check(b, f)).rejects.toThrow(StructureError);
  await expect(check(b, f)).rejects.toThrow(message);
};

const flip = (b: Buffer, at: number, bits: number): void => {
  b[at] = b[at]! ^ bits;
};

/** Offset of a PNG chunk's length field, by type. */
function pngChunk(png: Buffer, type: string): { at: number; length: number } {
  for (let at = 8; at < png.length; ) {
    const length = png.readUInt32BE(at);
    if (png.toString('latin1', at + 4, at + 8) === type) return { at, length };
    at += 12 + length;
  }
  throw new Error(`no ${type}`);
}

let jpeg: Buffer;
let png: Buffer;
let webp: Buffer;
let bmp: Buffer;
let dir: string;
/** The 320 px photo's size. */
const DIMS = { width: 320, height: 227 };

beforeAll(async () => {
  const base = sharp(photo).resize({ width: 320 });
  jpeg = await base.clone().jpeg().toBuffer();
  png = await base.clone().png().toBuffer();
  webp = await base.clone().webp().toBuffer();
  const { data, info } = await base.clone().removeAlpha().raw().toBuffer({ resolveWithObject: true });
  bmp = encodeBmp24({ data, width: info.width, height: info.height, channels: info.channels });
  dir = mkdtempSync(join(tmpdir(), 'pe-structure-'));
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('structural check accepts real files', () => {
  it('JPEG (baseline, progressive, mozjpeg), PNG (RGB, palette, 16-bit, interlaced), WebP (lossy, lossless, alpha), BMP: the dimensions sharp reports', async () => {
    const base = sharp(photo).resize({ width: 300 });
    const files: Array<[Buffer, StructuralFormat]> = [
      [jpeg, 'jpeg'],
      [await base.clone().jpeg({ progressive: true }).toBuffer(), 'jpeg'],
      [await base.clone().jpeg({ mozjpeg: true }).toBuffer(), 'jpeg'],
      [png, 'png'],
      [await base.clone().png({ palette: true }).toBuffer(), 'png'],
      [await base.clone().toColourspace('rgb16').png().toBuffer(), 'png'],
      [await base.clone().png({ progressive: true }).toBuffer(), 'png'],
      [webp, 'webp'],
      [await base.clone().webp({ lossless: true }).toBuffer(), 'webp'],
      [await base.clone().ensureAlpha(0.5).webp().toBuffer(), 'webp'],
    ];
    for (const [file, format] of files) {
      const meta = await sharp(file).metadata();
      expect(await check(file, format)).toEqual({ width: meta.width, height: meta.height });
    }
    expect(await check(bmp, 'bmp')).toEqual(DIMS);
  });

  it('EXIF orientation 6 swaps width and height, as sharp autoOrient does (JPEG APP1, PNG eXIf, WebP EXIF)', async () => {
    const base = sharp(photo).resize({ width: 300 }).withMetadata({ orientation: 6 });
    for (const format of ['jpeg', 'png', 'webp'] as const) {
      const file = await base.clone().toFormat(format).toBuffer();
      const meta = await sharp(file).metadata();
      expect(meta.autoOrient).toEqual({ width: meta.height, height: meta.width });
      expect(await check(file, format)).toEqual(meta.autoOrient);
    }
  });

  it('bytes after the JPEG EOI and after the PNG IEND are allowed, as decoders allow them', async () => {
    expect(await check(Buffer.concat([jpeg, Buffer.from('trailing camera data')]), 'jpeg')).toEqual(DIMS);
    expect(await check(Buffer.concat([png, Buffer.alloc(100, 7)]), 'png')).toEqual(DIMS);
  });

  it('reads a large file from disk in blocks with the same answers (a 1920 px JPEG and an 800 px PNG, over the 256 KiB block)', async () => {
    const big = await sharp(photo).jpeg({ quality: 100 }).toBuffer();
    const bigPng = await sharp(photo).resize({ width: 800 }).png().toBuffer();
    expect(big.length).toBeGreaterThan(400 * 1024);
    expect(bigPng.length).toBeGreaterThan(400 * 1024);
    for (const [file, format] of [
      [big, 'jpeg'],
      [bigPng, 'png'],
    ] as const) {
      const path = join(dir, `big.${format}`);
      writeFileSync(path, file);
      expect(await checkFileStructure(path, format)).toEqual(await check(file, format));
      const cut = join(dir, `cut.${format}`);
      writeFileSync(cut, file.subarray(0, file.length - 100 * 1024));
      await expect(checkFileStructure(cut, format)).rejects.toThrow(/truncated/);
    }
  });
});

describe('structural check refuses damaged files', () => {
  it('every format truncated at many points', async () => {
    for (const [file, format] of [
      [jpeg, 'jpeg'],
      [png, 'png'],
      [webp, 'webp'],
      [bmp, 'bmp'],
    ] as const) {
      for (const cut of [0.02, 0.1, 0.3, 0.5, 0.8, 0.95, 0.999]) {
        await expect(check(file.subarray(0, Math.floor(file.length * cut)), format), `${format} cut at ${cut}`).rejects.toThrow(
          StructureError,
        );
      }
    }
  });

  it('JPEG: without its EOI, a segment longer than the file, garbage after SOI, no scan', async () => {
    await refused(jpeg.subarray(0, jpeg.length - 2), 'jpeg', /without an EOI/);
    const long = Buffer.from(jpeg);
    long.writeUInt16BE(0xfff0, 4); // APP0's length
    await refused(long, 'jpeg', /truncated JPEG: segment/);
    await refused(Buffer.concat([jpeg.subarray(0, 2), Buffer.alloc(4000, 0x5a)]), 'jpeg', /expected a marker/);
    // SOI straight to EOI.
    await refused(Buffer.from([0xff, 0xd8, 0xff, 0xd9]), 'jpeg', /no frame header/);
  });

  it('PNG: a flipped CRC byte, a flipped data byte, no IEND, IHDR not first; an ancillary chunk CRC is not checked', async () => {
    const idat = pngChunk(png, 'IDAT');
    const badCrc = Buffer.from(png);
    flip(badCrc, idat.at + 8 + idat.length, 0x01);
    await refused(badCrc, 'png', /CRC mismatch in chunk IDAT/);
    const badData = Buffer.from(png);
    flip(badData, idat.at + 8 + 100, 0x40);
    await refused(badData, 'png', /CRC mismatch in chunk IDAT/);
    const ihdr = Buffer.from(png);
    flip(ihdr, 16 + 3, 0x01); // width's low byte
    await refused(ihdr, 'png', /CRC mismatch in chunk IHDR/);
    await refused(png.subarray(0, pngChunk(png, 'IEND').at), 'png', /truncated PNG/);
    // An ancillary chunk with a wrong CRC (libpng only warns about those).
    const text = Buffer.concat([Buffer.from([0, 0, 0, 4]), Buffer.from('tEXta\0bc', 'latin1'), Buffer.from([1, 2, 3, 4])]);
    const withText = Buffer.concat([png.subarray(0, 33), text, png.subarray(33)]);
    expect(await check(withText, 'png')).toEqual(DIMS);
    // The same bytes as a first chunk: IHDR must come first.
    await refused(Buffer.concat([png.subarray(0, 8), text, png.subarray(8)]), 'png', /first chunk is not IHDR/);
  });

  it('PNG: a valid CRC over an invalid header (bit depth 7) is refused', async () => {
    const bad = Buffer.from(png);
    bad[24] = 7;
    bad.writeUInt32BE(crc32(bad.subarray(12, 29)) >>> 0, 29);
    await refused(bad, 'png', /bit depth 7/);
  });

  it('WebP: RIFF size past the file, a chunk past the RIFF size, no VP8 start code', async () => {
    const riff = Buffer.from(webp);
    riff.writeUInt32LE(webp.length + 100, 4);
    await refused(riff, 'webp', /RIFF header declares/);
    const chunk = Buffer.from(webp);
    chunk.writeUInt32LE(webp.length, 16); // the VP8 chunk's size
    await refused(chunk, 'webp', /runs past the RIFF end/);
    const small = Buffer.from(webp);
    small.writeUInt32LE(webp.length - 8 - 200, 4); // RIFF shorter than its image chunk
    await refused(small, 'webp', /runs past the RIFF end/);
    const code = Buffer.from(webp);
    code[20 + 3] = 0;
    await refused(code, 'webp', /start code/);
  });

  it('BMP: truncated pixel rows and an unsupported depth', async () => {
    await refused(bmp.subarray(0, bmp.length - 1), 'bmp', /truncated BMP/);
    const depth = Buffer.from(bmp);
    depth.writeUInt16LE(7, 28);
    await refused(depth, 'bmp', /bit depth 7/);
  });

  it('onHeader runs with the header dimensions before the rest is read: a limit refuses a bomb that is also cut short', async () => {
    const cut = png.subarray(0, 100);
    const seen: unknown[] = [];
    await expect(checkStructure(bufferReader(cut), 'png', { onHeader: (d) => void seen.push(d) })).rejects.toThrow(/truncated/);
    expect(seen).toEqual([DIMS]);
    for (const [file, format] of [
      [jpeg, 'jpeg'],
      [webp, 'webp'],
      [bmp, 'bmp'],
    ] as const) {
      const limit = new Error('too large');
      await expect(
        checkStructure(bufferReader(file.subarray(0, Math.floor(file.length * 0.6))), format, {
          onHeader: () => {
            throw limit;
          },
        }),
      ).rejects.toBe(limit);
    }
  });
});
