import type { Overview, QueueRow, Stats } from '@photoenhance/contracts';
import { percentile, type QueueObserver } from '../metrics/observer.js';

export type { Overview };

/** Window for the dashboard's throughput and p50/p95 figures. */
export const STATS_WINDOW_MS = 15 * 60_000;

function stats(observer: QueueObserver, engine?: string): Stats {
  const recent = observer.recent(STATS_WINDOW_MS, engine);
  const completed = recent.filter((f) => f.outcome === 'completed');
  const lastMinute = completed.filter((f) => f.at >= Date.now() - 60_000).length;
  const waits = recent.map((f) => f.waitMs).filter((v): v is number => typeof v === 'number');
  const runs = completed.map((f) => f.runMs).filter((v): v is number => typeof v === 'number');
  return {
    windowMs: STATS_WINDOW_MS,
    finished: recent.length,
    failed: recent.filter((f) => f.outcome === 'failed').length,
    canceled: recent.filter((f) => f.outcome === 'canceled').length,
    completedPerMin: lastMinute,
    waitMs: { p50: percentile(waits, 50), p95: percentile(waits, 95) },
    runMs: { p50: percentile(runs, 50), p95: percentile(runs, 95) },
  };
}

export function overview(observer: QueueObserver): Overview {
  const queues: QueueRow[] = observer.queues.map((q) => ({
    ...q,
    queued: q.counts.waiting + q.counts.prioritized + q.counts.delayed + q.counts.paused + q.counts['waiting-children'],
  }));
  const totals = { queued: 0, active: 0, completed: 0, failed: 0, canceled: 0, delayed: 0 };
  for (const q of queues) {
    totals.queued += q.queued;
    totals.active += q.counts.active;
    totals.completed += q.counts.completed;
    totals.failed += q.counts.failed;
    totals.canceled += q.canceled;
    totals.delayed += q.counts.delayed;
  }
  const perEngine: Record<string, Stats> = {};
  for (const q of queues) perEngine[q.engine] = stats(observer, q.engine);
  const last = observer.samples.at(-1);
  return {
    at: Date.now(),
    queues,
    totals,
    stats: stats(observer),
    perEngine,
    hosts: observer.hosts,
    hostEvents: observer.hostEvents.slice(-100),
    ...(last ? { sample: last } : {}),
  };
}
