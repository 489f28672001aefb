import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { extname, join } from 'node:path';
import { DelayedError, type Job } from 'bullmq';
import { encodeJobError, type JobData, type JobResult } from '@photoenhance/contracts';
import { EngineJobError } from '@photoenhance/governor';
import { LocalStorage, createStorage, isAbandoned, isStorageUnavailable, ownerTag, type Storage } from '@photoenhance/storage';
import type { WorkerConfig } from './config.js';

/** Leftover staging folders of other hosts (shared folder) are removed after this long. */
const STALE_STAGING_MS = 24 * 3600_000;

/** One job attempt's private folder: the engine reads `input` and writes `output` here, nowhere else. */
export interface StagedJob {
  dir: string;
  input: string;
  output: string;
}

/**
 * Engines see local files whatever the storage: each attempt gets its own temp folder with the input in it (a hard link
 * on a folder backend, a download from object storage); the engine writes its output there, and only the worker
 * publishes it, through storage (a temp name and an atomic rename, or one PUT). An engine left running by a lost
 * attempt can write only into its own folder, which is deleted: it can never overwrite or publish a result.
 */
export class JobStaging {
  private backend: Storage | undefined;
  private baseDir: string | undefined;

  constructor(
    private readonly config: Readonly<WorkerConfig>,
    storage?: Storage,
  ) {
    this.backend = storage;
  }

  /** The job storage; set by start() (creating it loads the S3 backend only when STORAGE_URL selects it). */
  get storage(): Storage {
    if (!this.backend) throw new Error('JobStaging.start() has not run');
    return this.backend;
  }

  get base(): string {
    if (this.baseDir === undefined) throw new Error('JobStaging.start() has not run');
    return this.baseDir;
  }

  /** Start-up: storage reachable (names the variable when not), and leftovers of dead workers on this host removed. */
  async start(timeoutMs: number): Promise<number> {
    this.backend ??= await createStorage(this.config);
    // On a folder backend, beside the jobs: the same file system, so staging and committing cost no copy of the input.
    this.baseDir =
      this.config.stagingDir ??
      (this.backend instanceof LocalStorage ? join(this.backend.root, '.staging') : join(tmpdir(), 'photoenhance-staging'));
    await this.backend.check(timeoutMs);
    await mkdir(this.base, { recursive: true });
    let removed = 0;
    for (const name of await readdir(this.base).catch(() => [] as string[])) {
      try {
        const st = await stat(join(this.base, name));
        if (!isAbandoned(name, Date.now() - st.mtimeMs, STALE_STAGING_MS)) continue;
        await rm(join(this.base, name), { recursive: true, force: true });
        removed++;
      } catch {
        // gone meanwhile
      }
    }
    return removed;
  }

  /** A fresh folder with the input in it; undefined when the input is no longer stored. */
  async stage(data: JobData): Promise<StagedJob | undefined> {
    const dir = join(this.base, `${ownerTag()}~${data.id}`);
    await mkdir(dir, { recursive: true });
    const staged: StagedJob = {
      dir,
      input: join(dir, `input${extname(data.input.key)}`),
      output: join(dir, `output${extname(data.outputKey)}`),
    };
    try {
      if (!(await this.storage.downloadTo(data.input.key, staged.input))) {
        await this.release(staged);
        return undefined;
      }
    } catch (err) {
      await this.release(staged);
      throw err;
    }
    return staged;
  }

  /** Publish the engine's output as the job's result; OUTPUT_MISSING when the engine wrote nothing. */
  async commit(staged: StagedJob, data: JobData, engine: string): Promise<number> {
    const st = await stat(staged.output).catch(() => undefined);
    if (!st || st.size === 0)
      throw new EngineJobError('OUTPUT_MISSING', `engine ${engine} reported done but ${data.outputKey} is missing or empty`);
    return (await this.storage.putFile(data.outputKey, staged.output, { move: true })).size;
  }

  async release(staged: StagedJob | undefined): Promise<void> {
    if (staged) await rm(staged.dir, { recursive: true, force: true }).catch(() => undefined);
  }

  close(): void {
    this.backend?.close();
  }
}

/**
 * A storage outage fails the attempt with a retryable STORAGE_UNAVAILABLE (recorded on the job, retried with the job's
 * backoff). On the last attempt the job is not failed for it: it waits `retryMs` and tries again, so an outage never
 * loses a job. Undefined when `err` is not a storage outage.
 */
export async function storageFailure(
  err: unknown,
  job: Job<JobData, JobResult>,
  token: string | undefined,
  retryMs: number,
): Promise<Error | undefined> {
  if (!isStorageUnavailable(err)) return undefined;
  const reason = encodeJobError({ code: 'STORAGE_UNAVAILABLE', message: (err as Error).message });
  const attempts = job.opts.attempts ?? 1;
  if (job.attemptsMade + 1 >= attempts && token) {
    void job.log(`${reason}; attempts used up, retrying in ${retryMs} ms (storage outages never fail a job)`).catch(() => undefined);
    await job.moveToDelayed(Date.now() + retryMs, token);
    return new DelayedError();
  }
  return new Error(reason);
}
