import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import type { Storage } from './types.js';

/**
 * Run `fn` on a local file holding the object `key` (sharp, yauzl and engines read files): the object's own file on a
 * folder backend, else a temp copy removed afterwards. Throws an ENOENT error when the object does not exist.
 */
export async function withLocalFile<T>(storage: Storage, key: string, fn: (path: string) => Promise<T>): Promise<T> {
  const own = storage.localPath(key);
  if (own) return fn(own);
  const dir = await mkdtemp(join(tmpdir(), 'pe-object-'));
  try {
    const file = join(dir, basename(key));
    if (!(await storage.downloadTo(key, file))) throw Object.assign(new Error(`${key} is not stored`), { code: 'ENOENT' });
    return await fn(file);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
