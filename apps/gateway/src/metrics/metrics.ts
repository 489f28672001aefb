import type { FastifyInstance } from 'fastify';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { GpuInfo } from '@photoenhance/contracts';
import type { FinishedJob, HostEvent, QueueObserver } from './observer.js';

/**
 * Prometheus metrics at GET /metrics (one registry per gateway, so several gateways can live in one process).
 *
 * Counting: every gateway receives every queue event. For job outcomes and durations, the gateway that first claims a
 * finished job in Redis (SET NX, see QueueObserver.claim) counts it, so `sum without(instance)` over all gateways is
 * exact and no job is counted twice. Queue depth and host figures are read from Redis at scrape time, so every gateway
 * reports the same values (aggregate them with max, not sum). Admission holds are counted from heartbeats seen by each
 * gateway while it runs.
 */

const DURATION_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800];
const HOLD_BUCKETS = [0.5, 1, 5, 15, 30, 60, 300, 900, 3600];

export interface MetricsSources {
  observer: QueueObserver;
  /** SSE clients by stream (job events, dashboard). */
  sseClients(): Record<string, number>;
}

export class GatewayMetrics {
  readonly registry = new Registry();

  constructor(src: MetricsSources) {
    const r = this.registry;
    const { observer } = src;
    collectDefaultMetrics({ register: r, prefix: 'pe_gateway_' });

    new Gauge({
      name: 'pe_queue_jobs',
      help: 'Jobs in each engine queue by BullMQ state (read from Redis at scrape time); state="canceled": canceled while running, not counted under "failed".',
      labelNames: ['engine', 'state'],
      registers: [r],
      async collect() {
        this.reset();
        await observer.refresh();
        for (const q of observer.queues) {
          for (const [state, n] of Object.entries(q.counts)) this.set({ engine: q.engine, state }, n);
          this.set({ engine: q.engine, state: 'canceled' }, q.canceled);
        }
      },
    });
    new Gauge({
      name: 'pe_queue_paused',
      help: '1 while the engine queue is paused by an operator.',
      labelNames: ['engine'],
      registers: [r],
      collect() {
        this.reset();
        for (const q of observer.queues) this.set({ engine: q.engine }, q.paused ? 1 : 0);
      },
    });

    const wait = new Histogram({
      name: 'pe_job_wait_seconds',
      help: 'From submission to the start of the final attempt.',
      labelNames: ['engine'],
      buckets: DURATION_BUCKETS,
      registers: [r],
    });
    const run = new Histogram({
      name: 'pe_job_run_seconds',
      help: 'Run time of the final attempt.',
      labelNames: ['engine'],
      buckets: DURATION_BUCKETS,
      registers: [r],
    });
    const total = new Histogram({
      name: 'pe_job_total_seconds',
      help: 'From submission to finish.',
      labelNames: ['engine', 'outcome'],
      buckets: DURATION_BUCKETS,
      registers: [r],
    });
    const finished = new Counter({
      name: 'pe_jobs_finished_total',
      help: 'Jobs finished, by outcome and error code (code is empty when completed).',
      labelNames: ['engine', 'outcome', 'code'],
      registers: [r],
    });
    observer.on('finished', (f: FinishedJob) => {
      if (!f.countHere) return;
      finished.inc({ engine: f.engine, outcome: f.outcome, code: f.code ?? '' });
      if (f.waitMs !== undefined) wait.observe({ engine: f.engine }, f.waitMs / 1000);
      if (f.runMs !== undefined) run.observe({ engine: f.engine }, f.runMs / 1000);
      if (f.totalMs !== undefined) total.observe({ engine: f.engine, outcome: f.outcome }, f.totalMs / 1000);
    });

    new Gauge({
      name: 'pe_engine_rss_bytes',
      help: 'Resident memory of each engine process (from worker heartbeats).',
      labelNames: ['host', 'engine', 'pid'],
      registers: [r],
      collect() {
        this.reset();
        for (const h of observer.hosts)
          for (const p of h.processes ?? []) this.set({ host: h.hostId, engine: p.profile, pid: String(p.pid ?? '') }, p.rssBytes ?? 0);
      },
    });
    new Gauge({
      name: 'pe_engine_memory_limit_bytes',
      help: 'Memory limit of each engine process.',
      labelNames: ['host', 'engine', 'pid'],
      registers: [r],
      collect() {
        this.reset();
        for (const h of observer.hosts)
          for (const p of h.processes ?? []) this.set({ host: h.hostId, engine: p.profile, pid: String(p.pid ?? '') }, p.limitBytes ?? 0);
      },
    });
    new Gauge({
      name: 'pe_engine_jobs_done',
      help: 'Jobs done by each engine process since it started.',
      labelNames: ['host', 'engine', 'pid'],
      registers: [r],
      collect() {
        this.reset();
        for (const h of observer.hosts)
          for (const p of h.processes ?? []) this.set({ host: h.hostId, engine: p.profile, pid: String(p.pid ?? '') }, p.jobsDone ?? 0);
      },
    });
    new Counter({
      name: 'pe_engine_recycles_total',
      help: 'Engine processes recycled, by reason (counted by each worker host since it started; resets when the worker restarts).',
      labelNames: ['host', 'reason'],
      registers: [r],
      collect() {
        this.reset();
        for (const h of observer.hosts) for (const [reason, n] of Object.entries(h.recycles ?? {})) this.inc({ host: h.hostId, reason }, n);
      },
    });

    new Gauge({
      name: 'pe_host_memory_available_bytes',
      help: 'MemAvailable (or the cgroup equivalent) on each worker host.',
      labelNames: ['host'],
      registers: [r],
      collect() {
        this.reset();
        for (const h of observer.hosts) if (h.memory) this.set({ host: h.hostId }, h.memory.availableBytes);
      },
    });
    new Gauge({
      name: 'pe_host_memory_total_bytes',
      help: 'Total memory on each worker host.',
      labelNames: ['host'],
      registers: [r],
      collect() {
        this.reset();
        for (const h of observer.hosts) if (h.memory) this.set({ host: h.hostId }, h.memory.totalBytes);
      },
    });
    new Gauge({
      name: 'pe_host_memory_pressure_ratio',
      help: 'Memory pressure (PSI some avg10) as a ratio 0..1, where the host reports it.',
      labelNames: ['host'],
      registers: [r],
      collect() {
        this.reset();
        for (const h of observer.hosts)
          if (typeof h.memory?.pressureSome10 === 'number') this.set({ host: h.hostId }, h.memory.pressureSome10 / 100);
      },
    });
    new Gauge({
      name: 'pe_admission_min_available_bytes',
      help: 'Admission floor: the host holds while available memory is below this.',
      labelNames: ['host'],
      registers: [r],
      collect() {
        this.reset();
        for (const h of observer.hosts) if (h.admission?.thresholds) this.set({ host: h.hostId }, h.admission.thresholds.minAvailableBytes);
      },
    });
    new Gauge({
      name: 'pe_admission_holding',
      help: '1 while the worker host holds (takes no jobs), with the reason.',
      labelNames: ['host', 'reason'],
      registers: [r],
      collect() {
        this.reset();
        for (const h of observer.hosts)
          this.set(
            { host: h.hostId, reason: h.admission?.state === 'holding' ? h.admission.reason : '' },
            h.admission?.state === 'holding' ? 1 : 0,
          );
      },
    });
    // GPU hosts (from worker heartbeats): each GPU by its nvidia-smi index, and what each engine process holds on it.
    const gpuGauge = (name: string, help: string, value: (g: GpuInfo) => number | undefined): void => {
      new Gauge({
        name,
        help,
        labelNames: ['host', 'gpu', 'name'],
        registers: [r],
        collect() {
          this.reset();
          for (const h of observer.hosts) {
            if (h.gpu?.state === 'off') continue;
            for (const g of h.gpu?.gpus ?? []) {
              const v = value(g);
              if (typeof v === 'number') this.set({ host: h.hostId, gpu: String(g.index), name: g.name ?? '' }, v);
            }
          }
        },
      });
    };
    gpuGauge('pe_gpu_memory_free_bytes', 'Free memory of each GPU (nvidia-smi memory.free, from worker heartbeats).', (g) => g.freeBytes);
    gpuGauge('pe_gpu_memory_total_bytes', 'Total memory of each GPU (nvidia-smi memory.total).', (g) => g.totalBytes);
    gpuGauge('pe_gpu_utilization_ratio', 'GPU utilisation 0..1 (nvidia-smi utilization.gpu), where the board reports it.', (g) =>
      typeof g.utilizationPercent === 'number' ? g.utilizationPercent / 100 : undefined,
    );
    new Gauge({
      name: 'pe_gpu_sampling_up',
      help: '1 while the worker host reads its GPUs (nvidia-smi answers), 0 while sampling fails (the host holds with GPU_UNAVAILABLE). Absent on hosts without GPU governance.',
      labelNames: ['host'],
      registers: [r],
      collect() {
        this.reset();
        for (const h of observer.hosts)
          if (h.gpu && h.gpu.state !== 'off' && h.gpu.state !== 'unknown') this.set({ host: h.hostId }, h.gpu.state === 'on' ? 1 : 0);
      },
    });
    new Gauge({
      name: 'pe_gpu_sample_seconds',
      help: 'What the last GPU sample cost on each worker host (both nvidia-smi calls).',
      labelNames: ['host'],
      registers: [r],
      collect() {
        this.reset();
        for (const h of observer.hosts)
          if (h.gpu && h.gpu.state !== 'off' && typeof h.gpu.sampleCostMs === 'number')
            this.set({ host: h.hostId }, h.gpu.sampleCostMs / 1000);
      },
    });
    new Gauge({
      name: 'pe_engine_gpu_memory_bytes',
      help: 'GPU memory held by each engine process tree on the GPU it is pinned to (nvidia-smi compute apps).',
      labelNames: ['host', 'engine', 'pid', 'gpu'],
      registers: [r],
      collect() {
        this.reset();
        for (const h of observer.hosts) {
          for (const p of h.processes ?? [])
            if (p.gpu) this.set({ host: h.hostId, engine: p.profile, pid: String(p.pid ?? ''), gpu: String(p.gpu.index) }, p.gpu.usedBytes);
        }
      },
    });

    const holds = new Counter({
      name: 'pe_admission_holds_total',
      help: 'Times a worker host started holding, by reason (seen by this gateway).',
      labelNames: ['host', 'reason'],
      registers: [r],
    });
    const holdDuration = new Histogram({
      name: 'pe_admission_hold_duration_seconds',
      help: 'How long finished holds lasted.',
      labelNames: ['host'],
      buckets: HOLD_BUCKETS,
      registers: [r],
    });
    observer.on('hold', (ev: HostEvent) => holds.inc({ host: ev.hostId, reason: ev.reason }));
    observer.on('admit', (ev: HostEvent, holdStart: number | undefined) => {
      if (holdStart !== undefined) holdDuration.observe({ host: ev.hostId }, Math.max(0, ev.at - holdStart) / 1000);
    });

    const sse = src.sseClients;
    new Gauge({
      name: 'pe_sse_clients',
      help: 'Open server-sent-event streams on this gateway, by stream.',
      labelNames: ['stream'],
      registers: [r],
      collect() {
        this.reset();
        for (const [stream, n] of Object.entries(sse())) this.set({ stream }, n);
      },
    });
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}

export function metricsRoute(app: FastifyInstance, metrics: GatewayMetrics): void {
  app.get('/metrics', { schema: { hide: true } }, async (_req, reply) => {
    const { contentType, body } = await metrics.render();
    return reply.type(contentType).header('cache-control', 'no-store').send(body);
  });
}
