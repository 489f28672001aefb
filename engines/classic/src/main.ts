/**
 * Process entry of the classic engine: `node --import tsx engines/classic/src/main.ts` (from the repo root).
 * Speaks the engine protocol on stdio (docs/engine-protocol.md). Env: CLASSIC_THREADS (libvips threads, default
 * min(2, CPUs)); MALLOC_ARENA_MAX=2 is recommended in its environment to keep glibc from hoarding freed pixel memory.
 */
import { createRequire } from 'node:module';
import sharp from 'sharp';
import { EngineError, runEngine } from '@photoenhance/engine-protocol';
import { CLASSIC_CAPABILITIES, enhance } from './enhance.js';
import { configureSharp } from './sharp-settings.js';

const pkg = createRequire(import.meta.url)('../package.json') as { version: string };
let settings: ReturnType<typeof configureSharp> | undefined;

await runEngine({
  name: 'classic',
  version: pkg.version,
  capabilities: CLASSIC_CAPABILITIES,
  async init() {
    try {
      settings = configureSharp();
    } catch (err) {
      throw new EngineError('ENGINE_START_FAILED', (err as Error).message, false);
    }
  },
  info: () => ({
    device: 'cpu',
    sharp: sharp.versions.sharp,
    vips: sharp.versions.vips,
    threads: settings?.threads,
    simd: sharp.simd(),
    cache: false,
  }),
  handle: enhance,
});
