import { useMemo, useState } from 'preact/hooks';
import { post } from '../api';
import { TimeChart } from '../chart';
import { ActionButton, Card, ConfirmDialog } from '../components';
import { ms } from '../format';
import { useLive } from '../hooks';
import type { QueueRow } from '../types';

const STATES = ['waiting', 'prioritized', 'delayed', 'active', 'completed', 'failed'] as const;

export function QueueView() {
  const { overview, samples } = useLive();
  const [drain, setDrain] = useState<QueueRow | undefined>();
  const charts = useMemo(() => {
    const x = samples.map((s) => s.at / 1000);
    return {
      depth: [x, samples.map((s) => s.queued), samples.map((s) => s.active)] as [number[], number[], number[]],
      rate: [x, samples.map((s) => s.completedPerMin), samples.map((s) => s.failedPerMin), samples.map((s) => s.canceledPerMin ?? 0)] as [
        number[],
        number[],
        number[],
        number[],
      ],
      times: [
        x,
        samples.map((s) => s.waitP50 ?? null),
        samples.map((s) => s.waitP95 ?? null),
        samples.map((s) => s.runP50 ?? null),
        samples.map((s) => s.runP95 ?? null),
      ] as [number[], Array<number | null>, Array<number | null>, Array<number | null>, Array<number | null>],
    };
  }, [samples]);
  if (!overview) return <p class="muted">Connecting…</p>;
  const { totals, stats } = overview;
  return (
    <section>
      <div class="cards">
        <Card
          title="Queued"
          value={<span data-testid="total-queued">{totals.queued}</span>}
          sub={totals.delayed ? `${totals.delayed} waiting to retry` : 'waiting for a worker'}
        />
        <Card title="Active" value={<span data-testid="total-active">{totals.active}</span>} />
        <Card
          title="Completed"
          value={<span data-testid="total-completed">{totals.completed}</span>}
          sub="kept until their TTL"
          tone="ok"
        />
        <Card title="Failed" value={<span data-testid="total-failed">{totals.failed}</span>} tone={totals.failed > 0 ? 'red' : undefined} />
        {/* Canceled is a state of its own: a cancel is a person's decision, not a fault (older gateways send no figure). */}
        <Card
          title="Canceled"
          value={<span data-testid="total-canceled">{totals.canceled ?? 0}</span>}
          sub={`${stats.canceled ?? 0} in 15 min`}
        />
        <Card title="Throughput" value={`${stats.completedPerMin}/min`} sub={`${stats.finished} finished in 15 min`} />
        <Card title="Wait p50 / p95" value={`${ms(stats.waitMs.p50)} / ${ms(stats.waitMs.p95)}`} sub="last 15 min" />
        <Card title="Run p50 / p95" value={`${ms(stats.runMs.p50)} / ${ms(stats.runMs.p95)}`} sub="last 15 min" />
      </div>

      <h2>Queues</h2>
      <table class="grid" data-testid="queues-table">
        <thead>
          <tr>
            <th>Engine</th>
            <th>State</th>
            {STATES.map((s) => (
              <th class="num">{s}</th>
            ))}
            <th class="num">canceled</th>
            <th class="num">p50 run</th>
            <th>Actions</th>
          </tr>
        </thead>
        <tbody>
          {overview.queues.map((q) => (
            <tr data-engine={q.engine} data-testid={`queue-${q.engine}`}>
              <td>
                <b>{q.engine}</b>
              </td>
              <td>
                {q.paused ? (
                  <span class="badge s-paused" data-testid={`queue-state-${q.engine}`}>
                    paused
                  </span>
                ) : (
                  <span class="badge s-running" data-testid={`queue-state-${q.engine}`}>
                    running
                  </span>
                )}
              </td>
              {STATES.map((s) => (
                <td class="num" data-testid={`count-${q.engine}-${s}`}>
                  {s === 'waiting' ? q.counts.waiting + (q.counts.paused ?? 0) : (q.counts[s] ?? 0)}
                </td>
              ))}
              <td class="num" data-testid={`count-${q.engine}-canceled`}>
                {q.canceled ?? 0}
              </td>
              <td class="num">{ms(overview.perEngine[q.engine]?.runMs.p50)}</td>
              <td class="actions">
                {q.paused ? (
                  <ActionButton
                    label="Resume"
                    kind="primary"
                    testId={`resume-${q.engine}`}
                    run={() => post(`/dashboard/api/queues/${encodeURIComponent(q.engine)}/resume`)}
                  />
                ) : (
                  <ActionButton
                    label="Pause"
                    testId={`pause-${q.engine}`}
                    run={() => post(`/dashboard/api/queues/${encodeURIComponent(q.engine)}/pause`)}
                  />
                )}
                <ActionButton
                  label="Retry failed"
                  testId={`retry-${q.engine}`}
                  disabled={q.counts.failed === 0}
                  run={() => post(`/dashboard/api/queues/${encodeURIComponent(q.engine)}/retry-failed`)}
                />
                <button
                  type="button"
                  class="danger"
                  data-testid={`drain-${q.engine}`}
                  disabled={q.queued === 0}
                  onClick={() => setDrain(q)}
                >
                  Drain…
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>

      <div class="charts">
        <TimeChart
          title="Queue depth (last hour)"
          testId="chart-depth"
          data={charts.depth}
          series={[
            { label: 'queued', color: '#60a5fa', fill: '#60a5fa22' },
            { label: 'active', color: '#34d399' },
          ]}
        />
        <TimeChart
          title="Finished per minute"
          testId="chart-rate"
          data={charts.rate}
          series={[
            { label: 'completed/min', color: '#34d399' },
            { label: 'failed/min', color: '#f87171' },
            { label: 'canceled/min', color: '#94a3b8', dash: [2, 3] },
          ]}
          yFormat={(v) => v.toFixed(v < 10 ? 1 : 0)}
        />
        <TimeChart
          title="Wait and run time (p50 / p95 over 5 min)"
          testId="chart-times"
          data={charts.times}
          series={[
            { label: 'wait p50', color: '#fbbf24' },
            { label: 'wait p95', color: '#fbbf24', dash: [4, 4] },
            { label: 'run p50', color: '#a78bfa' },
            { label: 'run p95', color: '#a78bfa', dash: [4, 4] },
          ]}
          yFormat={(v) => ms(v)}
        />
      </div>

      {drain ? (
        <ConfirmDialog
          title={`Drain ${drain.engine}?`}
          body={
            <p>
              Cancels the {drain.queued} waiting job(s) of <b>{drain.engine}</b> and deletes their files. Active jobs finish.
            </p>
          }
          word={drain.engine}
          confirmLabel="Drain queue"
          onConfirm={() => post(`/dashboard/api/queues/${encodeURIComponent(drain.engine)}/drain`, { confirm: drain.engine })}
          onClose={() => setDrain(undefined)}
        />
      ) : null}
    </section>
  );
}
