import type { Readable } from 'node:stream';
import yauzl, { type Entry, type ZipFile } from 'yauzl';
import { ApiError } from '@photoenhance/contracts';

/**
 * ZIP archives as batch input, read from the stored file with yauzl (central directory first, so limits are decided
 * before a single byte is inflated). Refused as a whole (422 ARCHIVE_REFUSED with `reason`) when:
 * - `not-a-zip`: unreadable as ZIP; `too-many-entries`: more photo entries than MAX_BATCH_ITEMS (or an absurd central
 *   directory); `uncompressed-size`: the entries add up to more than MAX_ARCHIVE_UNCOMPRESSED_BYTES;
 * - `compression-ratio`: an entry inflates more than MAX_ARCHIVE_RATIO times (photos barely compress; bombs do);
 * - `nested-archive`: an entry is itself an archive (by name or content); `encrypted`; `unsupported-compression`;
 * - `unsafe-entry-name`: an absolute path, a drive letter, a backslash or a `..` segment. Entry names are only ever
 *   display names (their base name); files are stored under generated job ids.
 * Sizes declared in the directory are enforced while inflating (yauzl validateEntrySizes), so a lying header fails too:
 * - `size-mismatch`: an entry inflates to more or fewer bytes than its header declares;
 * - `corrupt-data`: an entry's compressed data cannot be inflated.
 */
export type ArchiveReason =
  | 'not-a-zip'
  | 'too-many-entries'
  | 'uncompressed-size'
  | 'compression-ratio'
  | 'nested-archive'
  | 'encrypted'
  | 'unsupported-compression'
  | 'unsafe-entry-name'
  | 'size-mismatch'
  | 'corrupt-data';

export function archiveRefused(reason: ArchiveReason, message: string, extensions: Record<string, unknown> = {}): ApiError {
  return new ApiError('ARCHIVE_REFUSED', message, { extensions: { reason, ...extensions } });
}

export interface ArchiveLimits {
  maxEntries: number;
  maxUncompressedBytes: number;
  maxRatio: number;
}

export interface ArchiveEntryInfo {
  /** The entry's full name inside the archive (display only). */
  path: string;
  uncompressedSize: number;
}

const NESTED = /\.(zip|zipx|jar|rar|7z|tar|tgz|gz|bz2|xz|zst|lz|lzma|cab|iso)$/i;
/** Entries below this size are never judged by their ratio (tiny files compress oddly and cannot be bombs). */
const RATIO_FLOOR_BYTES = 64 * 1024;

const open = (path: string): Promise<ZipFile> =>
  new Promise((resolve, reject) => {
    yauzl.open(
      path,
      { lazyEntries: true, autoClose: false, decodeStrings: false, validateEntrySizes: true, strictFileNames: false },
      (err, zip) => {
        if (err || !zip) reject(archiveRefused('not-a-zip', `The archive cannot be read as ZIP (${err?.message ?? 'no archive'})`));
        else resolve(zip);
      },
    );
  });

function entryName(entry: Entry): string {
  const raw = entry.fileName as unknown as Buffer;
  // Bit 11: UTF-8 names; otherwise CP437, of which latin1 is a readable approximation for display.
  return (entry.generalPurposeBitFlag & 0x800) !== 0 ? raw.toString('utf8') : raw.toString('latin1');
}

function isUnsafeName(name: string): boolean {
  if (name.includes('\\') || name.includes('\u0000')) return true;
  if (name.startsWith('/') || /^[a-zA-Z]:/.test(name)) return true;
  return name.split('/').some((seg) => seg === '..');
}

/** Entries we skip without counting them: directories and desktop metadata (macOS resource forks, dotfiles). */
function isSkipped(name: string): boolean {
  if (name.endsWith('/')) return true;
  if (name.startsWith('__MACOSX/')) return true;
  const base = name.split('/').pop() ?? '';
  return base.startsWith('.') || base === 'Thumbs.db' || base === 'desktop.ini';
}

async function eachEntry(zip: ZipFile, fn: (entry: Entry, name: string) => Promise<void>): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    zip.on('error', (err: Error) =>
      reject(err instanceof ApiError ? err : archiveRefused('not-a-zip', `The archive is damaged (${err.message})`)),
    );
    zip.on('end', () => resolve());
    zip.on('entry', (entry: Entry) => {
      fn(entry, entryName(entry)).then(() => zip.readEntry(), reject);
    });
    zip.readEntry();
  });
}

/** First pass: judge the whole central directory against the limits. Returns the photo entries to extract. */
export async function inspectArchive(path: string, limits: ArchiveLimits): Promise<ArchiveEntryInfo[]> {
  const zip = await open(path);
  try {
    // A directory far larger than the item limit is refused before reading it at all.
    if (zip.entryCount > limits.maxEntries * 2 + 100) {
      throw archiveRefused(
        'too-many-entries',
        `The archive has ${zip.entryCount} entries; at most ${limits.maxEntries} photos are accepted (MAX_BATCH_ITEMS)`,
        { entries: zip.entryCount, limit: limits.maxEntries },
      );
    }
    const found: ArchiveEntryInfo[] = [];
    let total = 0;
    await eachEntry(zip, async (entry, name) => {
      if (isUnsafeName(name))
        throw archiveRefused(
          'unsafe-entry-name',
          `The archive entry ${JSON.stringify(name.slice(0, 120))} is an absolute or parent-relative path`,
          { entry: name.slice(0, 200) },
        );
      if (isSkipped(name)) return;
      if ((entry.generalPurposeBitFlag & 0x1) !== 0)
        throw archiveRefused('encrypted', `The archive entry ${JSON.stringify(name)} is encrypted`, { entry: name });
      if (entry.compressionMethod !== 0 && entry.compressionMethod !== 8) {
        throw archiveRefused(
          'unsupported-compression',
          `The archive entry ${JSON.stringify(name)} uses compression method ${entry.compressionMethod}; only stored and deflate are read`,
          { entry: name },
        );
      }
      if (NESTED.test(name))
        throw archiveRefused('nested-archive', `The archive entry ${JSON.stringify(name)} is itself an archive; send photos only`, {
          entry: name,
        });
      const ratio = entry.uncompressedSize / Math.max(1, entry.compressedSize);
      if (entry.uncompressedSize > RATIO_FLOOR_BYTES && ratio > limits.maxRatio) {
        throw archiveRefused(
          'compression-ratio',
          `The archive entry ${JSON.stringify(name)} inflates ${Math.round(ratio)} times (limit ${limits.maxRatio}, MAX_ARCHIVE_RATIO): it looks like an archive bomb`,
          { entry: name, ratio: Math.round(ratio), limit: limits.maxRatio },
        );
      }
      total += entry.uncompressedSize;
      if (total > limits.maxUncompressedBytes) {
        throw archiveRefused(
          'uncompressed-size',
          `The archive inflates to more than ${limits.maxUncompressedBytes} bytes (MAX_ARCHIVE_UNCOMPRESSED_BYTES)`,
          { limitBytes: limits.maxUncompressedBytes },
        );
      }
      found.push({ path: name, uncompressedSize: entry.uncompressedSize });
      if (found.length > limits.maxEntries) {
        throw archiveRefused('too-many-entries', `The archive holds more than ${limits.maxEntries} photos (MAX_BATCH_ITEMS)`, {
          limit: limits.maxEntries,
        });
      }
    });
    return found;
  } finally {
    zip.close();
  }
}

/** Second pass: hand each accepted entry's inflating stream to `fn`, in archive order. */
export async function extractArchive(
  path: string,
  wanted: ArchiveEntryInfo[],
  fn: (info: ArchiveEntryInfo, stream: Readable) => Promise<void>,
): Promise<void> {
  const byName = new Map(wanted.map((w) => [w.path, w]));
  const zip = await open(path);
  try {
    await eachEntry(zip, async (entry, name) => {
      const info = byName.get(name);
      if (!info) return;
      byName.delete(name);
      const stream = await new Promise<Readable>((resolve, reject) => {
        zip.openReadStream(entry, (err, s) =>
          err || !s
            ? reject(archiveRefused('not-a-zip', `The archive entry ${JSON.stringify(name)} cannot be read (${err?.message ?? 'no data'})`))
            : resolve(s),
        );
      });
      // Whatever the consumer makes of a failing entry stream, the archive is what is wrong: say how.
      let broken: Error | undefined;
      stream.once('error', (err: Error) => {
        broken = err;
      });
      try {
        await fn(info, stream);
      } catch (err) {
        if (broken) throw entryBroken(name, broken);
        throw err;
      }
      if (broken) throw entryBroken(name, broken);
    });
  } finally {
    zip.close();
  }
}

/** An entry whose stream failed: a lying size in its header, or compressed data that does not inflate. */
function entryBroken(name: string, err: Error): ApiError {
  if (/bytes in the stream/i.test(err.message)) {
    return archiveRefused(
      'size-mismatch',
      `The archive entry ${JSON.stringify(name)} does not match the size its header declares (${err.message})`,
      { entry: name },
    );
  }
  return archiveRefused('corrupt-data', `The archive entry ${JSON.stringify(name)} is corrupt and cannot be inflated (${err.message})`, {
    entry: name,
  });
}

/** Content that is itself an archive (zip, gzip, 7z, rar, bzip2, xz). */
export function looksLikeArchive(head: Buffer): boolean {
  const h = head;
  return (
    (h[0] === 0x50 && h[1] === 0x4b && (h[2] === 0x03 || h[2] === 0x05 || h[2] === 0x07)) ||
    (h[0] === 0x1f && h[1] === 0x8b) ||
    (h[0] === 0x37 && h[1] === 0x7a && h[2] === 0xbc && h[3] === 0xaf) ||
    (h[0] === 0x52 && h[1] === 0x61 && h[2] === 0x72 && h[3] === 0x21) ||
    (h[0] === 0x42 && h[1] === 0x5a && h[2] === 0x68) ||
    (h[0] === 0xfd && h[1] === 0x37 && h[2] === 0x7a && h[3] === 0x58)
  );
}
