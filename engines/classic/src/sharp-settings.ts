import { availableParallelism } from 'node:os';
import sharp from 'sharp';

export interface SharpSettings {
  /** libvips worker threads per image. CLASSIC_THREADS; default min(2, CPUs). One job runs at a time per process. */
  threads: number;
  /** libvips operation cache. Off: every job is a different file, and a resident process must not grow with it. */
  cache: false;
}

/** Configure sharp for a resident process whose memory must stay bounded between jobs. */
export function configureSharp(env: NodeJS.ProcessEnv = process.env): SharpSettings {
  const raw = env.CLASSIC_THREADS;
  const threads = raw === undefined || raw === '' ? Math.min(2, availableParallelism()) : Number(raw);
  if (!Number.isInteger(threads) || threads < 1 || threads > 64) {
    throw new Error(`CLASSIC_THREADS must be an integer from 1 to 64; received ${JSON.stringify(raw)}`);
  }
  sharp.cache(false);
  sharp.concurrency(threads);
  return { threads, cache: false };
}
