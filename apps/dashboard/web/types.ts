/** Shapes the gateway's dashboard API sends: the shared ones come from @photoenhance/contracts (types only). */

export type {
  EngineProcessState as EngineProcess,
  HostEvent,
  HostSample,
  HostState,
  JobChange,
  JobPage,
  JobRow,
  JobStatus,
  Overview,
  QueueRow,
  Sample,
  Stats,
} from '@photoenhance/contracts/browser';
import type { JobChange, JobStatus } from '@photoenhance/contracts/browser';

export interface JobDetail {
  view: {
    id: string; status: JobStatus; progress: number; engine: string; options: Record<string, unknown>;
    input: { width: number; height: number; format: string; bytes: number; name: string };
    result?: { width: number; height: number; format: string; bytes: number; url: string; applied: Record<string, unknown>; meta?: Record<string, unknown> };
    error?: { code: string; message: string }; lastError?: { code: string; message: string };
    attempts: number; createdAt: string; startedAt?: string; finishedAt?: string; timings?: { queuedMs: number; runMs?: number };
    links: { self: string; result: string; events: string };
  };
  logs: string[];
  logCount: number;
  attemptsMade: number;
  attemptsStarted: number;
  maxAttempts: number;
  failedReason: string | null;
  engineRun: { engine: { name: string; version: string; host: string; pid?: number }; timings: Record<string, number> } | null;
  thumbnails: { input: string | null; output: string | null };
}

export function changeToStatus(event: JobChange['event']): JobStatus | undefined {
  switch (event) {
    case 'waiting':
    case 'delayed':
      return 'queued';
    case 'active':
      return 'active';
    case 'completed':
      return 'completed';
    case 'failed':
      return 'failed';
    case 'removed':
      return 'canceled';
    default:
      return undefined;
  }
}
