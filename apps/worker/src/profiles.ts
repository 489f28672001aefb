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

type BuiltinProfile = Partial<EngineProfile> & Pick<EngineProfile, 'name' | 'kind' | 'command'>;

/**
 * A built-in engine: a resident TypeScript process from engines/<name>, with the settings all of them share. The memory
 * limit is the governor's one default (DEFAULT_MEMORY_LIMIT_BYTES), not restated here.
 */
function builtin(name: string, settings: Partial<EngineProfile>): BuiltinProfile {
  return {
    name,
    kind: 'resident',
    // The compiled worker (scripts/build-runtime.mjs) runs the compiled engine: no TypeScript loader in the engine either.
    command:
      process.env.PHOTOENHANCE_COMPILED === '1'
        ? [process.execPath, `${repoRoot}engines/${name}/dist/main.js`]
        : nodeTsCommand(`${repoRoot}engines/${name}/src/main.ts`),
    // glibc arenas otherwise let RSS creep across a batch (engines/classic/README.md has the figures).
    env: { UV_THREADPOOL_SIZE: '2', MALLOC_ARENA_MAX: '2' },
    ...settings,
  };
}

/**
 * Built-in engine profiles. Operators add or override profiles in the worker config file (`engines: [...]`);
 * a profile there with the same name replaces the built-in one field by field. Only `classic` runs unless
 * WORKER_ENGINES or a config names the others.
 */
export function builtinProfiles(): BuiltinProfile[] {
  return [
    // Measured peak on a 1920 px photo at scale 2 stays well under this (engines/classic/README.md).
    builtin('classic', { expectedMemoryBytes: 512 * MiB, startupTimeoutMs: 30_000 }),
    // ESRGAN on tfjs WASM (engines/esrgan/README.md). Tiled: the WASM heap is bounded by one tile. Single-threaded:
    // ~15 µs per output pixel at scale 2 with the slim model, so a 12 MP photo at scale 4 takes minutes.
    builtin('esrgan', { expectedMemoryBytes: ESRGAN_EXPECTED, startupTimeoutMs: 60_000, jobTimeoutMs: 1_800_000 }),
    // Faces by ESRGAN, the rest by the classic pipeline, feathered together (engines/portrait/README.md).
    builtin('portrait', { expectedMemoryBytes: PORTRAIT_EXPECTED, startupTimeoutMs: 60_000, jobTimeoutMs: 900_000 }),
  ];
}
