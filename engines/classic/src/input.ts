import { open } from 'node:fs/promises';
import sharp, { type Sharp, type SharpOptions } from 'sharp';
import { EngineError } from '@photoenhance/engine-protocol';
import { BmpError, decodeBmp, isBmp } from '@photoenhance/imaging';

/**
 * Open a job's input for the built-in engines: BMP through our decoder (libvips reads none), everything else through
 * sharp with EXIF orientation applied and `failOn: 'error'` (a truncated file fails instead of yielding a grey
 * half-image). Missing → INPUT_MISSING; a directory → IMAGE_UNREADABLE. Decode failures surface when the pipeline
 * runs: pass them through `decodeFailure`.
 */
export async function openInput(input: string, options: SharpOptions = {}): Promise<Sharp> {
  let whole: Buffer | undefined;
  try {
    const fh = await open(input, 'r');
    try {
      const head = Buffer.alloc(16);
      await fh.read(head, 0, 16, 0);
      if (isBmp(head)) whole = await fh.readFile();
    } finally {
      await fh.close();
    }
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new EngineError('INPUT_MISSING', `input file not found: ${input}`, false);
    if (code === 'EISDIR') throw new EngineError('IMAGE_UNREADABLE', `input is a directory, not an image: ${input}`, false);
    throw err;
  }
  if (!whole) return sharp(input, { failOn: 'error', ...options }).rotate();
  try {
    const bmp = decodeBmp(whole);
    return sharp(bmp.data, { raw: { width: bmp.width, height: bmp.height, channels: bmp.channels } });
  } catch (err) {
    throw decodeFailure(err);
  }
}

/** A decoder's complaint about the input becomes IMAGE_UNREADABLE (not retryable); anything else is returned as is. */
export function decodeFailure(err: unknown): unknown {
  if (err instanceof EngineError) return err;
  const why = err instanceof Error ? (err.message.split('\n')[0] ?? '') : String(err);
  if (err instanceof BmpError || isDecodeError(why))
    return new EngineError('IMAGE_UNREADABLE', `cannot decode the input image: ${why}`, false, { cause: err });
  return err;
}

function isDecodeError(message: string): boolean {
  return /unsupported image format|premature end|corrupt|truncated|read error|improper call|not a known file format|vipsjpeg|vipspng|pngload|jpegload|webpload|tiffload|heifload|gifload|bad|invalid|input buffer|input file/i.test(
    message,
  );
}
