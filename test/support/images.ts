import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { encodeBmp24 } from '@photoenhance/imaging';

const require = createRequire(import.meta.url);

/** Real photos with faces, from the MIT package @vladmandic/face-api (1920 px group photos). */
export function samplePhoto(n = 1): string {
  const pkg = dirname(require.resolve('@vladmandic/face-api/package.json'));
  return join(pkg, 'demo', `sample${n}.jpg`);
}

/** A small real photo (downscaled sample) in the given format, for fast tests. */
export async function smallPhoto(format: 'jpeg' | 'png' | 'webp' | 'tiff' | 'bmp' = 'jpeg', width = 320): Promise<Buffer> {
  const base = sharp(samplePhoto(1)).resize({ width });
  if (format === 'bmp') {
    const { data, info } = await base.removeAlpha().raw().toBuffer({ resolveWithObject: true });
    return encodeBmp24({ data, width: info.width, height: info.height, channels: info.channels });
  }
  return base.toFormat(format).toBuffer();
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(buf: Buffer): number {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}

/** A tiny PNG whose header claims width×height (a decompression bomb in miniature): valid header, a few bytes of data. */
export function pngClaiming(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 0; // greyscale
  const idat = deflateSync(Buffer.alloc(1024));
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', idat),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** A real JPEG cut short. */
export async function truncatedJpeg(): Promise<Buffer> {
  const full = await smallPhoto('jpeg', 640);
  return full.subarray(0, Math.floor(full.length * 0.6));
}
