import { fileURLToPath } from 'node:url';
import type { EngineProfile } from '@photoenhance/governor';

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));

/** Node's own executable with tsx registered, so built-in TypeScript engines run without a build step from any cwd. */
export function nodeTsCommand(entry: string): string[] {
  return [process.execPath, '--import', import.meta.resolve('tsx'), entry];
}

const MiB = 1024 * 1024;
/** Measured peak RSS (VmHWM) plus headroom; the figures are in engines/esrgan/README.md and engines/portrait/README.md. */
const ESRGAN_EXPECTED = 768 * MiB;
const PORTRAIT_EXPECTED = 768 * MiB;

/**
 * Built-in engine profiles. Operators add or override profiles in the worker config file (`engines: [...]`);
 * a profile there with the same name replaces the built-in one field by field.
 */
export function builtinProfiles(): Array<Partial<EngineProfile> & Pick<EngineProfile, 'name' | 'kind' | 'command'>> {
  return [
    {
      name: 'classic',
      kind: 'resident',
      command: nodeTsCommand(`${repoRoot}engines/classic/src/main.ts`),
      // glibc arenas otherwise let RSS creep across a batch (engines/classic/README.md has the figures).
      env: { UV_THREADPOOL_SIZE: '2', MALLOC_ARENA_MAX: '2' },
      // Measured peak on a 1920 px photo at scale 2 stays well under this (engines/classic/README.md).
      expectedMemoryBytes: 512 * 1024 * 1024,
      memoryLimitBytes: 2 * 1024 * 1024 * 1024,
      startupTimeoutMs: 30_000,
    },
    {
      // ESRGAN super-resolution on tfjs WASM (engines/esrgan/README.md). Not run unless WORKER_ENGINES or a config names it.
      name: 'esrgan',
      kind: 'resident',
      command: nodeTsCommand(`${repoRoot}engines/esrgan/src/main.ts`),
      env: { UV_THREADPOOL_SIZE: '2', MALLOC_ARENA_MAX: '2' },
      // Tiled: the WASM heap is bounded by one tile; the 8-bit pixels of a 1920 px photo at scale 4 are the rest.
      expectedMemoryBytes: ESRGAN_EXPECTED,
      memoryLimitBytes: 2 * 1024 * 1024 * 1024,
      startupTimeoutMs: 60_000,
      // Single-threaded WASM: ~15 µs per output pixel at scale 2 with the slim model; a 12 MP photo at scale 4 takes minutes.
      jobTimeoutMs: 1_800_000,
    },
    {
      // Faces by ESRGAN, the rest by the classic pipeline, feathered together (engines/portrait/README.md).
      name: 'portrait',
      kind: 'resident',
      command: nodeTsCommand(`${repoRoot}engines/portrait/src/main.ts`),
      env: { UV_THREADPOOL_SIZE: '2', MALLOC_ARENA_MAX: '2' },
      expectedMemoryBytes: PORTRAIT_EXPECTED,
      memoryLimitBytes: 2 * 1024 * 1024 * 1024,
      startupTimeoutMs: 60_000,
      jobTimeoutMs: 900_000,
    },
  ];
}

export const REPO_ROOT = repoRoot;
