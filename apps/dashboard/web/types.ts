/** Shapes the gateway's dashboard API sends (apps/gateway/src/dashboard); kept loose where workers may add fields. */

export type JobStatus = 'queued' | 'active' | 'completed' | 'failed' | 'canceled';

export interface QueueRow {
  engine: string;
  paused: boolean;
  queued: number;
  counts: Record<'waiting' | 'prioritized' | 'delayed' | 'active' | 'completed' | 'failed' | 'paused' | 'waiting-children', number>;
}

export interface Stats {
  windowMs: number;
  finished: number;
  failed: number;
  completedPerMin: number;
  waitMs: { p50?: number; p95?: number };
  runMs: { p50?: number; p95?: number };
}

export interface HostSample { usedBytes: number; totalBytes: number; thresholdUsedBytes: number; holding: boolean }

export interface Sample {
  at: number;
  queued: number;
  active: number;
  failed: number;
  completedPerMin: number;
  failedPerMin: number;
  waitP50?: number;
  waitP95?: number;
  runP50?: number;
  runP95?: number;
  hosts: Record<string, HostSample>;
}

export interface EngineProcess {
  profile: string;
  pid?: number;
  state: string;
  rssBytes: number;
  limitBytes: number;
  peakBytes?: number;
  jobsDone: number;
  startedAt?: number;
  uptimeMs: number;
  enforcement?: string;
}

export interface HostState {
  hostId: string;
  hostname?: string;
  pid?: number;
  updatedAt?: number;
  admission: { state: 'admitting' | 'holding'; reason: string; detail?: string; since: number; thresholds?: { minAvailableBytes: number; maxUsedRatio: number; maxPressureSome10: number } };
  memory: { totalBytes: number; availableBytes: number; usedRatio: number; pressureSome10?: number };
  enforcement?: { mode: string; reason: string };
  processes?: EngineProcess[];
  recycles?: Record<string, number>;
  engines?: Array<{ name: string; kind: string; poolSize: number }>;
}

export interface HostEvent { at: number; hostId: string; kind: 'recycle' | 'hold' | 'admit'; reason: string; profile?: string; pid?: number; detail?: string; approximate?: boolean }

export interface Overview {
  at: number;
  queues: QueueRow[];
  totals: { queued: number; active: number; completed: number; failed: number; delayed: number };
  stats: Stats;
  perEngine: Record<string, Stats>;
  hosts: HostState[];
  hostEvents: HostEvent[];
  sample?: Sample;
}

export interface JobChange { engine: string; jobId: string; event: 'waiting' | 'active' | 'completed' | 'failed' | 'removed' | 'delayed' | 'progress'; progress?: number }

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

export interface JobPage { total: number; page: number; pageSize: number; pages: number; jobs: JobRow[] }

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
