import { ConfigError, parseBytes } from '@photoenhance/config';
import { defaultProfile, type EngineProfile } from '@photoenhance/governor';
import type { ProfileInput, WorkerConfig } from './config.js';
import { builtinProfiles } from './profiles.js';

function size(v: number | string | undefined, where: string): number | undefined {
  if (v === undefined) return undefined;
  try {
    return parseBytes(v);
  } catch (err) {
    throw new ConfigError('worker', [`setting ${where}: ${(err as Error).message}`]);
  }
}

/** Built-in profiles, overridden or extended by the config file, narrowed to the engines this host runs. */
export function resolveProfiles(config: Readonly<WorkerConfig>): EngineProfile[] {
  const merged = new Map<string, Partial<EngineProfile> & { name: string }>();
  for (const p of builtinProfiles()) merged.set(p.name, { ...p });
  for (const raw of config.engines as ProfileInput[]) {
    const { memoryLimitBytes, expectedMemoryBytes, expectedGpuMemoryBytes, gpuFloorBytes, gpuMemoryLimitBytes, ...rest } = raw;
    const prev = merged.get(raw.name) ?? { name: raw.name };
    const memLimit = size(memoryLimitBytes, `engines[${raw.name}].memoryLimitBytes`);
    const expected = size(expectedMemoryBytes, `engines[${raw.name}].expectedMemoryBytes`);
    const expectedGpu = size(expectedGpuMemoryBytes, `engines[${raw.name}].expectedGpuMemoryBytes`);
    const gpuFloor = size(gpuFloorBytes, `engines[${raw.name}].gpuFloorBytes`);
    const gpuLimit = size(gpuMemoryLimitBytes, `engines[${raw.name}].gpuMemoryLimitBytes`);
    merged.set(raw.name, {
      ...prev,
      ...rest,
      env: { ...(prev.env ?? {}), ...(raw.env ?? {}) },
      ...(memLimit !== undefined ? { memoryLimitBytes: memLimit } : {}),
      ...(expected !== undefined ? { expectedMemoryBytes: expected } : {}),
      ...(expectedGpu !== undefined ? { expectedGpuMemoryBytes: expectedGpu } : {}),
      ...(gpuFloor !== undefined ? { gpuFloorBytes: gpuFloor } : {}),
      ...(gpuLimit !== undefined ? { gpuMemoryLimitBytes: gpuLimit } : {}),
    });
  }
  const run = config.run ?? (config.engines.length ? config.engines.map((e) => e.name) : ['classic']);
  const problems: string[] = [];
  const out: EngineProfile[] = [];
  for (const name of run) {
    const p = merged.get(name);
    if (!p) {
      problems.push(
        `WORKER_ENGINES names "${name}", but there is no such engine profile (known: ${[...merged.keys()].join(', ')}); add it under "engines" in the WORKER_CONFIG file`,
      );
      continue;
    }
    if (!p.command || p.command.length === 0) {
      problems.push(`engine "${name}" has no "command" (an argument array such as ["/usr/bin/python3", "engine.py"])`);
      continue;
    }
    out.push(defaultProfile({ ...p, name, command: p.command }));
  }
  if (problems.length) throw new ConfigError('worker', problems);
  return out;
}
