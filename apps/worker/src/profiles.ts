import { fileURLToPath } from 'node:url';
import type { EngineProfile } from '@photoenhance/governor';

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));

/** Node's own executable with tsx registered, so built-in TypeScript engines run without a build step from any cwd. */
export function nodeTsCommand(entry: string): string[] {
  return [process.execPath, '--import', import.meta.resolve('tsx'), entry];
}

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
  ];
}

export const REPO_ROOT = repoRoot;
