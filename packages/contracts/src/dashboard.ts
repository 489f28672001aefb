/**
 * What the gateway's dashboard API and its SSE stream send (apps/gateway/src/dashboard), shared with the front-end
 * (apps/dashboard) as types only. Also exported through `@photoenhance/contracts/browser`, so the browser build pulls in
 * nothing of Node.
 */
import type { JobStatus, JobView } from './job.js';
import type { HostState } from './system.js';

export const QUEUE_STATES = ['waiting', 'prioritized', 'delayed', 'active', 'completed', 'failed', 'paused', 'waiting-children'] as const;
export type QueueState = (typeof QUEUE_STATES)[number];

export interface QueueSnapshot {
  engine: string;
  paused: boolean;
  /** BullMQ's counts, except that `failed` leaves out the jobs canceled while they ran (BullMQ keeps them in its failed set). */
  counts: Record<QueueState, number>;
  /** Jobs canceled while they ran, still kept (a job canceled while queued is removed from the queue at once). */
  canceled: number;
}

export interface QueueRow extends QueueSnapshot {
  /** waiting + prioritized + delayed + paused (what our API calls `queued`). */
  queued: number;
}

/** Per host: memory used and the admission threshold expressed as "used" bytes (total − floor). */
export interface HostSample {
  usedBytes: number;
  totalBytes: number;
  thresholdUsedBytes: number;
  holding: boolean;
}

export interface Sample {
  at: number;
  /** Totals over all engines. */
  queued: number;
  active: number;
  failed: number;
  /** Jobs canceled while they ran, still kept (not counted in `failed`). */
  canceled?: number;
  /** Jobs finished in the minute before the sample. */
  completedPerMin: number;
  failedPerMin: number;
  /** Jobs canceled in the minute before the sample, queued or running (not counted in `failedPerMin`). */
  canceledPerMin?: number;
  /** Wait and run time percentiles over the jobs finished in the last five minutes (ms). */
  waitP50?: number;
  waitP95?: number;
  runP50?: number;
  runP95?: number;
  hosts: Record<string, HostSample>;
}

export interface Stats {
  windowMs: number;
  /** Completed, failed and canceled jobs in the window. */
  finished: number;
  failed: number;
  /** Canceled in the window, queued or running (not counted in `failed`). */
  canceled: number;
  completedPerMin: number;
  waitMs: { p50?: number; p95?: number };
  runMs: { p50?: number; p95?: number };
}

/** A recycle or admission change seen in a heartbeat, for the hosts timeline. */
export interface HostEvent {
  at: number;
  hostId: string;
  kind: 'recycle' | 'hold' | 'admit';
  reason: string;
  profile?: string;
  pid?: number;
  detail?: string;
  /** Set when the time is when the gateway noticed it (recycle counts only), not when it happened. */
  approximate?: boolean;
}

/** What the dashboard's SSE stream pushes each sample (and GET /dashboard/api/overview answers). */
export interface Overview {
  at: number;
  queues: QueueRow[];
  totals: { queued: number; active: number; completed: number; failed: number; canceled: number; delayed: number };
  stats: Stats;
  perEngine: Record<string, Stats>;
  hosts: HostState[];
  hostEvents: HostEvent[];
  sample?: Sample;
}

export interface JobChange {
  engine: string;
  jobId: string;
  event: 'waiting' | 'active' | 'completed' | 'failed' | 'removed' | 'delayed' | 'progress';
  progress?: number;
}

export interface JobRow {
  id: string;
  engine: string;
  status: JobStatus;
  progress: number;
  attempts: number;
  createdAt?: string;
  startedAt?: string;
  finishedAt?: string;
  input?: { name: string; width: number; height: number; bytes: number };
  error?: { code: string; message: string };
}

export interface JobPage {
  total: number;
  page: number;
  pageSize: number;
  pages: number;
  jobs: JobRow[];
}

/** GET /dashboard/api/jobs/:id: the public job view (the same JobView as GET /v1/jobs/:id) plus what an operator sees. */
export interface JobDetail {
  view: JobView;
  logs: string[];
  logCount: number;
  attemptsMade: number;
  attemptsStarted: number;
  maxAttempts: number;
  failedReason: string | null;
  /** The last stack traces BullMQ kept (at most 3). */
  stacktrace: string[];
  engineRun: { engine: { name: string; version: string; host: string; pid?: number }; timings: Record<string, number> } | null;
  thumbnails: { input: string | null; output: string | null };
}
