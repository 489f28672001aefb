import type { AdmissionConfig, EngineProfile } from './types.js';
import { BYTES } from './child-failure.js';

export type ProfileInput = Partial<EngineProfile> & Pick<EngineProfile, 'name' | 'command'>;

/** Option errors name the field, what was expected and what arrived. */
function fail(profile: string, field: string, expected: string, got: unknown): never {
  throw new TypeError(`engine profile "${profile}": ${field} must be ${expected}; received ${JSON.stringify(got)}`);
}

/** The one default hard memory limit per engine process tree (the mission's figure); built-in engines use it too. */
export const DEFAULT_MEMORY_LIMIT_BYTES = 8 * BYTES.GiB;

/** A complete profile from a partial one; defaults as documented on EngineProfile. Validates and freezes. */
export function defaultProfile(partial: ProfileInput): EngineProfile {
  const name = partial.name;
  if (typeof name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/.test(name)) {
    fail(String(name), 'name', 'letters, digits, "_", "." or "-" (at most 63)', name);
  }
  const p: EngineProfile = {
    kind: 'resident',
    env: {},
    poolSize: 1,
    startupTimeoutMs: 120_000,
    jobTimeoutMs: 600_000,
    stopGraceMs: 5_000,
    memoryLimitBytes: DEFAULT_MEMORY_LIMIT_BYTES,
    softLimitRatio: 0.75,
    expectedMemoryBytes: BYTES.GiB,
    maxJobs: 0,
    maxJobsJitter: 0,
    idleTtlMs: 300_000,
    memoryRetries: 1,
    ...stripUndefined(partial),
    name,
    command: partial.command,
  };
  if (p.kind !== 'resident' && p.kind !== 'oneshot') fail(name, 'kind', '"resident" or "oneshot"', p.kind);
  if (!Array.isArray(p.command) || p.command.length === 0 || !p.command.every((a) => typeof a === 'string')) {
    fail(name, 'command', 'a non-empty array of strings ([executable, ...args])', p.command);
  }
  const positive = ['poolSize', 'startupTimeoutMs', 'jobTimeoutMs', 'memoryLimitBytes', 'expectedMemoryBytes'] as const;
  for (const k of positive) if (!(Number.isFinite(p[k]) && p[k] > 0)) fail(name, k, 'a positive number', p[k]);
  const nonNegative = ['stopGraceMs', 'maxJobs', 'maxJobsJitter', 'idleTtlMs', 'memoryRetries'] as const;
  for (const k of nonNegative) if (!(Number.isFinite(p[k]) && p[k] >= 0)) fail(name, k, 'a number >= 0', p[k]);
  if (!Number.isInteger(p.poolSize)) fail(name, 'poolSize', 'a positive integer', p.poolSize);
  if (!(p.softLimitRatio > 0 && p.softLimitRatio <= 1)) fail(name, 'softLimitRatio', 'a number in (0, 1]', p.softLimitRatio);
  if (p.cpuQuota !== undefined && !(p.cpuQuota > 0)) fail(name, 'cpuQuota', 'a positive number of cores', p.cpuQuota);
  if (p.maxOpenFiles !== undefined && !(Number.isInteger(p.maxOpenFiles) && p.maxOpenFiles > 0)) {
    fail(name, 'maxOpenFiles', 'a positive integer', p.maxOpenFiles);
  }
  if (p.kind === 'oneshot' && p.outputPattern === undefined) p.outputPattern = '{output}';
  if (p.gpus !== undefined && p.gpus !== 'all' && !(Array.isArray(p.gpus) && p.gpus.every((g) => Number.isInteger(g) && g >= 0))) {
    fail(name, 'gpus', '"all" or a list of GPU indexes (integers >= 0)', p.gpus);
  }
  if (p.gpuMemoryLimitBytes !== undefined && !(Number.isFinite(p.gpuMemoryLimitBytes) && p.gpuMemoryLimitBytes > 0)) {
    fail(name, 'gpuMemoryLimitBytes', 'a positive number of bytes', p.gpuMemoryLimitBytes);
  }
  if (p.gpuMemoryLimitMode !== undefined && p.gpuMemoryLimitMode !== 'hard' && p.gpuMemoryLimitMode !== 'soft') {
    fail(name, 'gpuMemoryLimitMode', '"hard" or "soft"', p.gpuMemoryLimitMode);
  }
  for (const k of ['expectedGpuMemoryBytes', 'gpuFloorBytes'] as const) {
    if (p[k] !== undefined && !(Number.isFinite(p[k]) && p[k]! >= 0)) fail(name, k, 'a number of bytes >= 0', p[k]);
  }
  return Object.freeze({
    ...p,
    command: Object.freeze([...p.command]) as string[],
    env: Object.freeze({ ...p.env }),
    ...(Array.isArray(p.gpus) ? { gpus: Object.freeze([...p.gpus]) as number[] } : {}),
  });
}

/** Admission thresholds with defaults filled in (minAvailableBytes stays derived from the profiles when absent). */
export function defaultAdmission(partial: Partial<AdmissionConfig> = {}): AdmissionConfig {
  const a: AdmissionConfig = { maxUsedRatio: 0.8, maxPressureSome10: 10, checkIntervalMs: 1_000, ...stripUndefined(partial) };
  if (a.minAvailableBytes !== undefined && !(a.minAvailableBytes >= 0)) {
    throw new TypeError(`admission.minAvailableBytes must be a number >= 0; received ${JSON.stringify(a.minAvailableBytes)}`);
  }
  if (!(a.maxUsedRatio > 0 && a.maxUsedRatio <= 1))
    throw new TypeError(`admission.maxUsedRatio must be in (0, 1]; received ${a.maxUsedRatio}`);
  if (!(a.maxPressureSome10 >= 0)) throw new TypeError(`admission.maxPressureSome10 must be >= 0; received ${a.maxPressureSome10}`);
  if (!(a.checkIntervalMs >= 10)) throw new TypeError(`admission.checkIntervalMs must be >= 10; received ${a.checkIntervalMs}`);
  return a;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
