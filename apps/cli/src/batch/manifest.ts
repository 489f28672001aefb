import { createHash, randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { PARTIAL_DOWNLOAD } from '@photoenhance/client';

/** The manifest's file name inside the output folder. */
export const MANIFEST_NAME = '.photoenhance-batch.jsonl';
/** Held while a batch writes into the folder: one batch per output folder at a time. */
export const LOCK_NAME = '.photoenhance-batch.lock';

/**
 * Where a photo stands. `submitting`: its key is recorded but no answer came yet (a rerun resends with the same
 * Idempotency-Key); `queued`: the gateway gave a job id; `done`: the result is in the output folder; `failed`: the job
 * or the submission failed (a rerun tries again with a new key).
 */
export type EntryState = 'submitting' | 'queued' | 'done' | 'failed';

export interface ManifestEntry {
  rel: string;
  size: number;
  mtimeMs: number;
  /** 0 for the first submission; +1 each time the photo has to be submitted afresh (failed, or the job expired). */
  attempt: number;
  /** The Idempotency-Key sent for this attempt. */
  key: string;
  state: EntryState;
  jobId?: string;
  /** Output path relative to the output folder, once done. */
  output?: string;
  bytes?: number;
  error?: { code: string; message: string };
  at: string;
}

export interface ManifestHeader {
  type: 'header';
  version: 1;
  /** Random per output folder; part of every Idempotency-Key so two folders never share keys. */
  id: string;
  createdAt: string;
  source: string;
  /** The enhancement options as sent (the manifest only resumes a batch with the same options). */
  options: Record<string, unknown>;
}

/**
 * The batch manifest, JSON Lines in the output folder: a header line, then one line per change of a photo's entry
 * (last line per `rel` wins). Each change is one append, written before the step it enables, so a crash or SIGKILL
 * loses at most the line being written (a torn last line is ignored on load). The file is rewritten compactly
 * (temporary file + rename) when a run starts and ends.
 */
export class Manifest {
  readonly path: string;
  readonly header: ManifestHeader;
  private readonly entries: Map<string, ManifestEntry>;
  private fd: number | undefined;

  private constructor(path: string, header: ManifestHeader, entries: Map<string, ManifestEntry>) {
    this.path = path;
    this.header = header;
    this.entries = entries;
  }

  /** Open the manifest of `outDir`, creating it (with these options) when there is none. */
  static async open(outDir: string, source: string, options: Record<string, unknown>): Promise<Manifest> {
    await mkdir(outDir, { recursive: true });
    const path = join(outDir, MANIFEST_NAME);
    let text: string | undefined;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    let header: ManifestHeader | undefined;
    const entries = new Map<string, ManifestEntry>();
    for (const line of text?.split('\n') ?? []) {
      if (!line.trim()) continue;
      let rec: unknown;
      try {
        rec = JSON.parse(line);
      } catch {
        continue; // a line torn by a crash mid-write
      }
      if (!rec || typeof rec !== 'object') continue;
      const r = rec as Record<string, unknown>;
      if (r.type === 'header' && !header) header = rec as ManifestHeader;
      else if (typeof r.rel === 'string' && typeof r.state === 'string' && typeof r.key === 'string')
        entries.set(r.rel, rec as ManifestEntry);
    }
    if (text !== undefined && !header)
      throw new Error(`${path} is not a photoenhance batch manifest (no header line); move it away to start over`);
    const m = new Manifest(
      path,
      header ?? { type: 'header', version: 1, id: randomBytes(8).toString('hex'), createdAt: new Date().toISOString(), source, options },
      entries,
    );
    m.compact();
    return m;
  }

  get(rel: string): ManifestEntry | undefined {
    return this.entries.get(rel);
  }

  all(): ManifestEntry[] {
    return [...this.entries.values()];
  }

  /** Record a change: one appended line, in the kernel before this returns (survives the process being killed). */
  record(entry: Omit<ManifestEntry, 'at'>): ManifestEntry {
    const full: ManifestEntry = { ...entry, at: new Date().toISOString() };
    for (const k of Object.keys(full) as Array<keyof ManifestEntry>) if (full[k] === undefined) delete full[k];
    this.entries.set(full.rel, full);
    this.fd ??= openSync(this.path, 'a');
    writeSync(this.fd, `${JSON.stringify(full)}\n`);
    return full;
  }

  /** The Idempotency-Key of one attempt at one version of one photo. */
  keyFor(rel: string, size: number, mtimeMs: number, attempt: number): string {
    const h = createHash('sha256').update(`${this.header.id}\n${rel}\n${size}\n${mtimeMs}\n${attempt}`).digest('hex');
    return `pe-batch-${h.slice(0, 40)}`;
  }

  /** Rewrite the file as header + one line per photo, atomically; later records append to it. */
  compact(): void {
    this.closeFd();
    const tmp = `${this.path}.${randomBytes(4).toString('hex')}.tmp`;
    const lines = [JSON.stringify(this.header), ...[...this.entries.values()].map((e) => JSON.stringify(e))];
    try {
      writeFileSync(tmp, `${lines.join('\n')}\n`);
      const fd = openSync(tmp, 'r');
      fsyncSync(fd);
      closeSync(fd);
      renameSync(tmp, this.path);
    } catch (err) {
      rmSync(tmp, { force: true });
      throw err;
    }
  }

  close(): void {
    this.compact();
    this.closeFd();
  }

  private closeFd(): void {
    if (this.fd !== undefined) {
      fsyncSync(this.fd);
      closeSync(this.fd);
      this.fd = undefined;
    }
  }
}

/** Same options, whatever the key order. */
export function sameOptions(a: Record<string, unknown>, b: Record<string, unknown>): boolean {
  const norm = (o: Record<string, unknown>): string =>
    JSON.stringify(
      Object.keys(o)
        .sort()
        .map((k) => [k, o[k]]),
    );
  return norm(a) === norm(b);
}

/**
 * One batch per output folder at a time: a lock file holding the pid. A lock left by a process that is gone (a crash,
 * SIGKILL) is taken over. Returns a release function.
 */
export function lockFolder(outDir: string): () => void {
  const path = join(outDir, LOCK_NAME);
  for (let tries = 0; tries < 3; tries++) {
    try {
      writeFileSync(path, `${process.pid}\n`, { flag: 'wx' });
      return () => rmSync(path, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number(readFileSync(path, 'utf8').trim());
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && alive(pid)) {
        throw new LockedError(`another batch (pid ${pid}) is writing into ${outDir}; wait for it or stop it first`);
      }
      rmSync(path, { force: true });
    }
  }
  throw new LockedError(`cannot lock ${outDir} (${path} keeps reappearing)`);
}

/** Unfinished downloads of an earlier run that was killed; only called while holding the folder's lock. */
export async function removeStalePartials(outDir: string): Promise<number> {
  let removed = 0;
  for (const rel of await readdir(outDir, { recursive: true })) {
    if (PARTIAL_DOWNLOAD.test(basename(rel))) {
      await rm(join(outDir, rel), { force: true });
      removed++;
    }
  }
  return removed;
}

export class LockedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LockedError';
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
