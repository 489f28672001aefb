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
  failedItems?: Array<{ index: number; name: string; jobId?: string; status: string; error?: { code: string; message: string } }>;
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
  if (data.batches.length === 0) return <p class="muted" data-testid="no-batches">No batches yet. Submit one with POST /v1/batches (photoenhance batch DIR).</p>;
  return (
    <section data-testid="batches">
      {data.batches.map((b) => (
        <div class="batch" data-batch-id={b.id}>
          <div class="job-head">
            <h3 class="mono">{b.id}</h3>
            <StatusBadge status={b.status} />
            <span class="muted small">{b.engine} · {b.total} item(s) · created {ago(b.createdAt)}</span>
            <span class="spacer" />
            {b.links ? <a class="button" href={b.links.results}>Results ZIP</a> : null}
          </div>
          <div class="batch-progress">
            <progress max={1} value={b.progress} />
            <span class="small">{Math.round(b.progress * 100)} % · {Object.entries(b.counts).filter(([, n]) => n > 0).map(([s, n]) => `${n} ${s}`).join(' · ')}</span>
          </div>
          {b.failedItems && b.failedItems.length ? (
            <table class="grid">
              <thead><tr><th>#</th><th>Item</th><th>Job</th><th>Error</th></tr></thead>
              <tbody>
                {b.failedItems.map((i) => (
                  <tr>
                    <td>{i.index}</td>
                    <td>{i.name}</td>
                    <td>{i.jobId ? <a href={`#/jobs/${i.jobId}`} class="mono">{i.jobId}</a> : '–'}</td>
                    <td>{i.error ? <><code>{i.error.code}</code> <span class="small">{i.error.message}</span></> : ''}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          ) : null}
        </div>
      ))}
    </section>
  );
}
