import { createReadStream } from 'node:fs';
import { copyFile, link, mkdir, open, readdir, rename, rm, stat, access, constants, type FileHandle } from 'node:fs/promises';
import { dirname, isAbsolute, join, normalize, resolve, sep } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { isAbandoned, ownerTag } from './owner.js';
import {
  StorageConfigError,
  UploadTooLargeError,
  inputKey,
  outputKey,
  type ByteRange,
  type ObjectRead,
  type Storage,
  type StoredObject,
  type WriteOptions,
} from './types.js';

/** Half-written uploads, beside the job folders so the final rename stays on one file system. */
export const PARTIAL_DIR = '.partial';

/** Counts bytes, feeds the hash, errors with UploadTooLargeError past the limit. `head` goes out first. */
export function byteCounter(opts: WriteOptions): {
  stream: Transform;
  total: () => number;
  tooLarge: () => UploadTooLargeError | undefined;
} {
  let total = 0;
  let over: UploadTooLargeError | undefined;
  const stream = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      total += chunk.length;
      if (total > opts.limit) {
        over = new UploadTooLargeError(opts.limit);
        return cb(over);
      }
      opts.hash?.update(chunk);
      cb(null, chunk);
    },
  });
  if (opts.head?.length) {
    total += opts.head.length;
    if (total > opts.limit) over = new UploadTooLargeError(opts.limit);
    else {
      opts.hash?.update(opts.head);
      stream.push(opts.head);
    }
  }
  return { stream, total: () => total, tooLarge: () => over };
}

const etagOf = (size: number, mtimeMs: number): string => `"${size.toString(16)}-${Math.floor(mtimeMs).toString(16)}"`;

/**
 * Job files under one folder: `<root>/<jobId>/input.<ext>` and `<root>/<jobId>/output.<ext>`.
 * The root may be a shared mount (NFS, etc.) so several hosts see the same files. Writes go to a temp name first and
 * are renamed into place, so a reader (or a crashed writer) never leaves a partial file under a real key.
 */
export class LocalStorage implements Storage {
  readonly kind = 'local' as const;
  readonly root: string;

  constructor(root: string) {
    this.root = resolve(root);
  }

  get location(): string {
    return this.root;
  }

  static inputKey(id: string, ext: string): string {
    return inputKey(id, ext);
  }

  static outputKey(id: string, ext: string): string {
    return outputKey(id, ext);
  }

  /** Absolute path for a key; refuses keys that would leave the root. */
  path(key: string): string {
    if (isAbsolute(key) || key.split(/[\\/]/).includes('..')) throw new Error(`invalid storage key ${JSON.stringify(key)}`);
    const p = normalize(join(this.root, key));
    if (!p.startsWith(this.root + sep)) throw new Error(`invalid storage key ${JSON.stringify(key)}`);
    return p;
  }

  localPath(key: string): string {
    return this.path(key);
  }

  jobDir(id: string): string {
    return this.path(id);
  }

  async ensureJobDir(id: string): Promise<string> {
    const dir = this.jobDir(id);
    await mkdir(dir, { recursive: true });
    return dir;
  }

  /**
   * Open a new file under `.partial/`. The folder is made when the open finds it missing (first upload, or removed
   * since): not once per upload, which cost a recursive mkdir on every request.
   */
  private async openPartial(): Promise<{ path: string; handle: FileHandle }> {
    const dir = join(this.root, PARTIAL_DIR);
    const path = join(dir, ownerTag());
    try {
      return { path, handle: await open(path, 'w') };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      await mkdir(dir, { recursive: true });
      return { path, handle: await open(path, 'w') };
    }
  }

  /**
   * Stream `source` into `key`, counting bytes; aborts with UploadTooLargeError as soon as `limit` is passed, without
   * reading the rest. Written under `.partial/` and renamed into place when complete.
   */
  async writeStream(key: string, source: Readable, opts: WriteOptions): Promise<number> {
    const file = this.path(key);
    const counter = byteCounter(opts);
    const early = counter.tooLarge();
    if (early) throw early;
    const { path: tmp, handle } = await this.openPartial();
    try {
      await pipeline(source, counter.stream, handle.createWriteStream());
      await mkdir(dirname(file), { recursive: true });
      await rename(tmp, file);
    } catch (err) {
      await rm(tmp, { force: true });
      throw counter.tooLarge() ?? err;
    }
    return counter.total();
  }

  async putFile(key: string, file: string, opts: { move?: boolean } = {}): Promise<StoredObject> {
    const target = this.path(key);
    await mkdir(dirname(target), { recursive: true });
    if (opts.move) {
      try {
        // Same file system (worker staging under the root): one atomic rename, no copy.
        await rename(file, target);
        return (await this.stat(key))!;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
      }
    }
    // A temp name in the job's own folder, then one rename: readers see the old file or the whole new one.
    const tmp = `${target}.${ownerTag()}.tmp`;
    try {
      await copyFile(file, tmp);
      await rename(tmp, target);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
    return (await this.stat(key))!;
  }

  async stat(key: string): Promise<StoredObject | undefined> {
    try {
      const st = await stat(this.path(key));
      if (!st.isFile()) return undefined;
      return { size: st.size, etag: etagOf(st.size, st.mtimeMs), lastModified: st.mtime };
    } catch {
      return undefined;
    }
  }

  async size(key: string): Promise<number | undefined> {
    return (await this.stat(key))?.size;
  }

  async openRead(key: string, opts: { range?: ByteRange } = {}): Promise<ObjectRead | undefined> {
    const info = await this.stat(key);
    if (!info) return undefined;
    const { range } = opts;
    const stream = createReadStream(this.path(key), range ? { start: range.start, end: range.end } : {});
    // Opened after stat: a file deleted in between surfaces as a stream error, which the caller treats as gone.
    return { ...info, stream, ...(range ? { range } : {}) };
  }

  async downloadTo(key: string, file: string): Promise<boolean> {
    const src = this.path(key);
    try {
      // Same file system: a hard link costs nothing and survives the key being deleted meanwhile.
      await link(src, file);
      return true;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return false;
    }
    try {
      await copyFile(src, file);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
  }

  async removeJob(id: string): Promise<void> {
    // A worker may be writing the job's result while it is canceled: rm then meets a file created after it listed the
    // folder (ENOTEMPTY), and tries again.
    await rm(this.jobDir(id), { recursive: true, force: true, maxRetries: 5, retryDelay: 20 });
  }

  async staleJobs(maxAgeMs: number, now = Date.now()): Promise<string[]> {
    let entries: string[];
    try {
      entries = await readdir(this.root);
    } catch {
      return [];
    }
    const stale: string[] = [];
    for (const name of entries) {
      // Our own temp folders (.partial, .staging) are not jobs.
      if (name.startsWith('.')) continue;
      try {
        const dir = join(this.root, name);
        const st = await stat(dir);
        if (!st.isDirectory()) continue;
        let newest = st.mtimeMs;
        for (const f of await readdir(dir)) newest = Math.max(newest, (await stat(join(dir, f))).mtimeMs);
        if (now - newest > maxAgeMs) stale.push(name);
      } catch {
        // vanished while we looked: nothing to sweep
      }
    }
    return stale;
  }

  async check(): Promise<void> {
    try {
      await mkdir(this.root, { recursive: true });
      await access(this.root, constants.R_OK | constants.W_OK);
    } catch (err) {
      throw new StorageConfigError('STORAGE_DIR', `STORAGE_DIR ${this.root} is not a writable folder (${(err as Error).message})`, {
        cause: err,
      });
    }
  }

  async cleanPartials(opts: { maxAgeMs: number; now?: number }): Promise<number> {
    const now = opts.now ?? Date.now();
    const dir = join(this.root, PARTIAL_DIR);
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      return 0;
    }
    let removed = 0;
    for (const name of names) {
      try {
        const st = await stat(join(dir, name));
        if (!isAbandoned(name, now - st.mtimeMs, opts.maxAgeMs)) continue;
        await rm(join(dir, name), { force: true, recursive: true });
        removed++;
      } catch {
        // gone meanwhile
      }
    }
    return removed;
  }

  close(): void {}
}
