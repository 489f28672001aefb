import type { EnforcementMode, RecycleEvent } from '@photoenhance/contracts';
import { formatBytes } from './child-failure.js';

/**
 * Recycling: why an engine process is replaced, with the figures that show it. The between-jobs policy (job count,
 * soft memory limit, GPU soft limit) is decided here; the pools act on the verdict and report it through the governor's
 * 'recycle' event, and the worker turns that into the RecycleEvent of its heartbeat with recycleEvent() below.
 */

/** Recycles decided by the governor (counted when decided). */
export type PlannedRecycleReason = 'max-jobs' | 'soft-limit' | 'gpu-soft-limit' | 'idle' | 'shutdown';
/** A process that went on its own or was killed for a job (counted when found gone). */
export type ExitRecycleReason = 'crash' | 'memory-limit' | 'gpu-memory-limit' | 'timeout' | 'cancel' | 'protocol';
export type RecycleReason = PlannedRecycleReason | ExitRecycleReason;

const PLANNED: ReadonlySet<string> = new Set<PlannedRecycleReason>(['max-jobs', 'soft-limit', 'gpu-soft-limit', 'idle', 'shutdown']);
const EXIT: ReadonlySet<string> = new Set<ExitRecycleReason>([
  'crash',
  'memory-limit',
  'gpu-memory-limit',
  'timeout',
  'cancel',
  'protocol',
]);

export function isPlannedRecycle(reason: string): reason is PlannedRecycleReason {
  return PLANNED.has(reason);
}

/** Why a ready process is gone, from its stop reason (ours, when we stopped it) and whether it passed its memory limit. */
export function exitReason(stopReason: string | undefined, memoryLimit: boolean): RecycleReason {
  if (stopReason !== undefined && (PLANNED.has(stopReason) || EXIT.has(stopReason))) return stopReason as RecycleReason;
  return memoryLimit ? 'memory-limit' : 'crash';
}

/** The figures of one recycle; which are present depends on the reason. */
export interface RecycleFigures {
  /** Jobs the process finished. */
  jobsDone?: number;
  /** Highest RSS of its process tree seen. */
  peakBytes?: number;
  /** max-jobs: the count it reached (jitter included). */
  maxJobs?: number;
  /** soft-limit: the RSS after its last job, the soft limit and the hard limit. */
  rssBytes?: number;
  softLimitBytes?: number;
  /** soft-limit and memory-limit: the hard limit. */
  limitBytes?: number;
  /** memory-limit: what stopped it. */
  enforcedBy?: EnforcementMode;
  /** gpu-soft-limit and gpu-memory-limit: GPU memory held, the soft limit (soft only) and the limit. */
  gpuUsedBytes?: number;
  gpuSoftLimitBytes?: number;
  gpuLimitBytes?: number;
  /** idle: how long it sat idle, and the TTL. */
  idleMs?: number;
  idleTtlMs?: number;
  /** timeout (one-shot engines): the job timeout it ran past. */
  jobTimeoutMs?: number;
  /** How it ended, in words (e.g. "exited with code 1"), for processes that went on their own or were killed. */
  exit?: string;
}

/** One recycle, as the governor's 'recycle' event carries it. */
export interface RecycleInfo {
  profile: string;
  pid: number | undefined;
  reason: RecycleReason;
  figures: RecycleFigures;
}

/** What the between-jobs policy needs to know about a process that just finished a job. */
export interface AfterJob {
  jobsDone: number;
  /** Its job count with its jitter drawn (0 = no limit). */
  maxJobs: number;
  /** RSS of its process tree now. */
  rssBytes(): number;
  /** GPU memory it holds (undefined: not pinned / unknown). */
  gpuUsedBytes(): number | undefined;
}

/** After a job: should this process be recycled, and why? Checked in this order; the first that applies wins. */
export function dueAfterJob(
  profile: { softLimitRatio: number; memoryLimitBytes: number; gpuMemoryLimitBytes?: number },
  p: AfterJob,
): { reason: PlannedRecycleReason; figures: RecycleFigures } | undefined {
  if (p.maxJobs > 0 && p.jobsDone >= p.maxJobs) return { reason: 'max-jobs', figures: { jobsDone: p.jobsDone, maxJobs: p.maxJobs } };
  const rss = p.rssBytes();
  const soft = profile.softLimitRatio * profile.memoryLimitBytes;
  if (rss > soft)
    return { reason: 'soft-limit', figures: { rssBytes: rss, softLimitBytes: Math.round(soft), limitBytes: profile.memoryLimitBytes } };
  const gpuLimit = profile.gpuMemoryLimitBytes;
  const gpuUsed = gpuLimit ? p.gpuUsedBytes() : undefined;
  if (gpuLimit && gpuUsed !== undefined && gpuUsed > profile.softLimitRatio * gpuLimit) {
    return {
      reason: 'gpu-soft-limit',
      figures: { gpuUsedBytes: gpuUsed, gpuSoftLimitBytes: Math.round(profile.softLimitRatio * gpuLimit), gpuLimitBytes: gpuLimit },
    };
  }
  return undefined;
}

/** The heartbeat's view of one recycle (the memory figure shown is the peak, else the RSS that triggered it). */
export function recycleEvent(info: RecycleInfo, at = Date.now()): RecycleEvent {
  const f = info.figures;
  const memory = f.peakBytes ?? f.rssBytes;
  const gpu =
    f.gpuUsedBytes !== undefined && f.gpuLimitBytes !== undefined
      ? `GPU memory ${formatBytes(f.gpuUsedBytes)} > ${f.gpuSoftLimitBytes !== undefined ? `soft mark ${formatBytes(f.gpuSoftLimitBytes)} of ` : ''}limit ${formatBytes(f.gpuLimitBytes)}`
      : undefined;
  const detail = [f.exit, f.enforcedBy ? `enforced by ${f.enforcedBy}` : undefined, gpu].filter(Boolean).join('; ');
  return {
    at,
    profile: info.profile,
    reason: info.reason,
    ...(info.pid !== undefined ? { pid: info.pid } : {}),
    ...(detail ? { detail } : {}),
    ...(memory !== undefined ? { rssBytes: memory } : {}),
    ...(f.limitBytes !== undefined ? { limitBytes: f.limitBytes } : {}),
  };
}
