import { createWriteStream } from 'node:fs';
import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import { isAbsolute, join, normalize, resolve, sep } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

export class UploadTooLargeError extends Error {
  constructor(readonly limit: number) {
    super(`upload exceeds ${limit} bytes`);
    this.name = 'UploadTooLargeError';
  }
}

/**
 * Job files under one root: `<root>/<jobId>/input.<ext>` and `<root>/<jobId>/output.<ext>`.
 * Keys are relative and built only from job ids we generate; a client's file name is never part of a path.
 * The root may be a shared mount (NFS, etc.) so several worker hosts see the same files.
 */
export class LocalStorage {
  readonly root: string;

  constructor(root: string) {
    this.root = resolve(root);
  }

  static inputKey(id: string, ext: string): string {
    return `${id}/input.${ext}`;
  }

  static outputKey(id: string, ext: string): string {
    return `${id}/output.${ext}`;
  }

  /** Absolute path for a key; refuses keys that would leave the root. */
  path(key: string): string {
    if (isAbsolute(key) || key.split(/[\\/]/).includes('..')) throw new Error(`invalid storage key ${JSON.stringify(key)}`);
    const p = normalize(join(this.root, key));
    if (!p.startsWith(this.root + sep)) throw new Error(`invalid storage key ${JSON.stringify(key)}`);
    return p;
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
   * Stream `source` into `key`, counting bytes; aborts with UploadTooLargeError as soon as `limit` is passed, without
   * reading the rest. `head` bytes already read from the stream (for sniffing) are written first.
   */
  async writeStream(key: string, source: Readable, opts: { limit: number; head?: Buffer; hash?: { update(data: Buffer): unknown } }): Promise<number> {
    const file = this.path(key);
    await mkdir(resolve(file, '..'), { recursive: true });
    let total = 0;
    const counter = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        total += chunk.length;
        if (total > opts.limit) return cb(new UploadTooLargeError(opts.limit));
        opts.hash?.update(chunk);
        cb(null, chunk);
      },
    });
    if (opts.head && opts.head.length) {
      total += opts.head.length;
      if (total > opts.limit) throw new UploadTooLargeError(opts.limit);
      opts.hash?.update(opts.head);
      counter.push(opts.head);
    }
    try {
      await pipeline(source, counter, createWriteStream(file));
    } catch (err) {
      await rm(file, { force: true });
      throw err;
    }
    return total;
  }

  async size(key: string): Promise<number | undefined> {
    try {
      return (await stat(this.path(key))).size;
    } catch {
      return undefined;
    }
  }

  async removeJob(id: string): Promise<void> {
    await rm(this.jobDir(id), { recursive: true, force: true });
  }

  /** Job folders whose newest file is older than `maxAgeMs` (for sweeping orphans the queue no longer knows). */
  async staleJobs(maxAgeMs: number, now = Date.now()): Promise<string[]> {
    let entries: string[];
    try {
      entries = await readdir(this.root);
    } catch {
      return [];
    }
    const stale: string[] = [];
    for (const name of entries) {
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
}
