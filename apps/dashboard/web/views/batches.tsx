import { useEffect, useRef, useState } from 'preact/hooks';
import { api } from '../api';
import { StatusBadge } from '../components';
import { ago } from '../format';
import { useJobChanges, useTick } from '../hooks';

interface BatchSummary {
  id: string;
  status: string;
  total: number;
  counts: Record<string, number>;
  progress: number;
  engine: string;
  createdAt: string;
  updatedAt?: string;
  finishedAt?: string;
  links?: { self: string; results: string; events: string };
  failedItems?: Array<BatchItem>;
  /** Every item (newer gateways); the page falls back to failedItems without it. */
  items?: Array<BatchItem>;
}

interface BatchItem {
  /** 0-based in the API; shown from 1, as people count. */
  index: number;
  name: string;
  jobId?: string;
  status: string;
  progress?: number;
  error?: { code: string; message: string };
}

/** Every item of one batch, numbered from 1, with a filter by state (only the states present are offered). */
function BatchItems(props: { batch: BatchSummary }) {
  const [filter, setFilter] = useState('all');
  const all = props.batch.items ?? props.batch.failedItems ?? [];
  if (all.length === 0) return null;
  const states = [...new Set(all.map((i) => i.status))];
  const shown = filter === 'all' ? all : all.filter((i) => i.status === filter);
  return (
    <div class="batch-items">
      <label class="small">
        Show{' '}
        <select data-testid="batch-item-filter" value={filter} onChange={(e) => setFilter((e.currentTarget as HTMLSelectElement).value)}>
          <option value="all">all {all.length} items</option>
          {states.map((s) => (
            <option value={s}>
              {s} ({all.filter((i) => i.status === s).length})
            </option>
          ))}
        </select>
      </label>
      <table class="grid" data-testid="batch-items">
        <thead>
          <tr>
            <th>#</th>
            <th>Item</th>
            <th>State</th>
            <th>Job</th>
            <th>Error</th>
          </tr>
        </thead>
        <tbody>
          {shown.map((i) => (
            <tr data-item-status={i.status}>
              <td class="num">{i.index + 1}</td>
              <td>{i.name}</td>
              <td>
                <StatusBadge status={i.status} />
              </td>
              <td>
                {i.jobId ? (
                  <a href={`#/jobs/${i.jobId}`} class="mono">
                    {i.jobId}
                  </a>
                ) : (
                  '–'
                )}
              </td>
              <td>
                {i.error ? (
                  <>
                    <code>{i.error.code}</code> <span class="small">{i.error.message}</span>
                  </>
                ) : (
                  ''
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** Batches (read defensively: the batch API may be absent on an older gateway). */
export function BatchesView(_props: { id?: string }) {
  useTick(5000);
  const [data, setData] = useState<{ available: boolean; batches: BatchSummary[] } | undefined>();
  const [error, setError] = useState<string | undefined>();
  const timer = useRef<number | undefined>(undefined);
  const load = async (): Promise<void> => {
    try {
      setData(await api('/dashboard/api/batches?limit=20'));
      setError(undefined);
    } catch (err) {
      setError((err as Error).message);
    }
  };
  useEffect(() => {
    void load();
    return () => window.clearTimeout(timer.current);
  }, []);
  // Item changes are job changes: re-read at most every 2 s while they come.
  useJobChanges((changes) => {
    if (timer.current !== undefined || !changes.some((c) => c.event !== 'progress')) return;
    timer.current = window.setTimeout(() => {
      timer.current = undefined;
      void load();
    }, 2000);
  });
  if (error) return <p class="error-text">{error}</p>;
  if (!data) return <p class="muted">Loading…</p>;
  if (!data.available) return <p class="muted">This gateway has no batch API.</p>;
  if (data.batches.length === 0)
    return (
      <p class="muted" data-testid="no-batches">
        No batches yet. Submit one with POST /v1/batches (photoenhance batch DIR).
      </p>
    );
  return (
    <section data-testid="batches">
      {data.batches.map((b) => (
        <div class="batch" data-batch-id={b.id}>
          <div class="job-head">
            <h3 class="mono">{b.id}</h3>
            <StatusBadge status={b.status} />
            <span class="muted small">
              {b.engine} · {b.total} item(s) · created {ago(b.createdAt)}
            </span>
            <span class="spacer" />
            {b.links ? (
              <a class="button" href={b.links.results}>
                Results ZIP
              </a>
            ) : null}
          </div>
          <div class="batch-progress">
            <progress max={1} value={b.progress} />
            <span class="small">
              {Math.round(b.progress * 100)} % ·{' '}
              {Object.entries(b.counts)
                .filter(([, n]) => n > 0)
                .map(([s, n]) => `${n} ${s}`)
                .join(' · ')}
            </span>
          </div>
          <BatchItems batch={b} />
        </div>
      ))}
    </section>
  );
}
