import { describe, expect, it } from 'vitest';
import { BmpError, bmpDimensions, decodeBmp, encodeBmp24 } from '../src/index.js';

/** 3x2 test picture, row-major RGB. */
const pixels = Buffer.from([255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30, 40, 50, 60, 70, 80, 90]);

function header(opts: {
  width: number;
  height: number;
  bpp: number;
  compression?: number;
  dataOffset: number;
  colors?: number;
  dib?: number;
  fileSize: number;
}): Buffer {
  const dib = opts.dib ?? 40;
  const b = Buffer.alloc(14 + dib);
  b.write('BM', 0, 'latin1');
  b.writeUInt32LE(opts.fileSize, 2);
  b.writeUInt32LE(opts.dataOffset, 10);
  b.writeUInt32LE(dib, 14);
  b.writeInt32LE(opts.width, 18);
  b.writeInt32LE(opts.height, 22);
  b.writeUInt16LE(1, 26);
  b.writeUInt16LE(opts.bpp, 28);
  b.writeUInt32LE(opts.compression ?? 0, 30);
  b.writeUInt32LE(opts.colors ?? 0, 46);
  return b;
}

describe('decodeBmp', () => {
  it('round-trips a 24-bit bottom-up BMP', () => {
    const img = decodeBmp(encodeBmp24({ data: pixels, width: 3, height: 2, channels: 3 }));
    expect(img).toMatchObject({ width: 3, height: 2, channels: 3 });
    expect([...img.data]).toEqual([...pixels]);
  });

  it('reads a top-down 32-bit BI_BITFIELDS BMP with alpha (V3 header)', () => {
    const dib = 56;
    const dataOffset = 14 + dib;
    const data = Buffer.alloc(3 * 2 * 4);
    for (let i = 0; i < 6; i++)
      data.writeUInt32LE((((i * 40) << 24) | (pixels[i * 3]! << 16) | (pixels[i * 3 + 1]! << 8) | pixels[i * 3 + 2]!) >>> 0, i * 4);
    const h = header({ width: 3, height: -2, bpp: 32, compression: 3, dataOffset, dib, fileSize: dataOffset + data.length });
    h.writeUInt32LE(0x00ff0000, 54);
    h.writeUInt32LE(0x0000ff00, 58);
    h.writeUInt32LE(0x000000ff, 62);
    h.writeUInt32LE(0xff000000, 66);
    const img = decodeBmp(Buffer.concat([h, data]));
    expect(img).toMatchObject({ width: 3, height: 2, channels: 4 });
    expect([...img.data.subarray(0, 8)]).toEqual([255, 0, 0, 0, 0, 255, 0, 40]);
    expect(img.data[23]).toBe(200);
  });

  it('reads a 4-bit palette BMP', () => {
    const palette = Buffer.from([0, 0, 0, 0, 255, 255, 255, 0]); // black, white (BGRx)
    const dataOffset = 14 + 40 + palette.length;
    // 3 px per row -> 2 bytes of nibbles, padded to 4: row0 = 0,1,0 ; row1 = 1,1,1 (bottom-up: row1 first)
    const data = Buffer.from([0x11, 0x10, 0, 0, 0x01, 0x00, 0, 0]);
    const h = header({ width: 3, height: 2, bpp: 4, dataOffset, colors: 2, fileSize: dataOffset + data.length });
    const img = decodeBmp(Buffer.concat([h, palette, data]));
    expect([...img.data]).toEqual([0, 0, 0, 255, 255, 255, 0, 0, 0, 255, 255, 255, 255, 255, 255, 255, 255, 255]);
  });

  it('refuses truncated, RLE and non-BMP data with a BmpError', () => {
    const full = encodeBmp24({ data: pixels, width: 3, height: 2, channels: 3 });
    expect(() => decodeBmp(full.subarray(0, full.length - 5))).toThrow(/truncated/);
    const rle = Buffer.from(full);
    rle.writeUInt32LE(1, 30);
    expect(() => decodeBmp(rle)).toThrow(/RLE8/);
    expect(() => decodeBmp(Buffer.from('not a bitmap at all, really not'))).toThrow(BmpError);
  });
});

describe('bmpDimensions', () => {
  it('reads width and height from the header without decoding', () => {
    const bmp = encodeBmp24({ data: pixels, width: 3, height: 2, channels: 3 });
    expect(bmpDimensions(bmp.subarray(0, 64))).toEqual({ width: 3, height: 2 });
    expect(() => bmpDimensions(Buffer.from('GIF89a0000000000000000000000'))).toThrow(BmpError);
  });
});
