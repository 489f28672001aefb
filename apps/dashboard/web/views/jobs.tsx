import { useEffect, useRef, useState } from 'preact/hooks';
import { api } from '../api';
import { StatusBadge } from '../components';
import { ago, bytes, ms } from '../format';
import { useJobChanges, useLive, useTick } from '../hooks';
import { changeToStatus, type JobPage, type JobRow } from '../types';

const STATES = ['all', 'active', 'queued', 'failed', 'completed'] as const;
const PAGE_SIZE = 25;
/** Changes arrive live; the page is re-read from the server at most this often, and only when something changed. */
const REFETCH_MS = 1000;

function readFilters(): { state: string; engine: string; page: number } {
  const q = new URLSearchParams(location.hash.split('?')[1] ?? '');
  return { state: q.get('state') ?? 'all', engine: q.get('engine') ?? 'all', page: Math.max(1, Number(q.get('page') ?? 1) || 1) };
}

export function JobsView() {
  const { overview } = useLive();
  useTick(5000);
  const [filters, setFilters] = useState(readFilters);
  const [data, setData] = useState<JobPage | undefined>();
  const [error, setError] = useState<string | undefined>();
  const timer = useRef<number | undefined>(undefined);
  const last = useRef(0);

  const load = async (): Promise<void> => {
    last.current = Date.now();
    const q = new URLSearchParams({ state: filters.state, page: String(filters.page), pageSize: String(PAGE_SIZE) });
    if (filters.engine !== 'all') q.set('engine', filters.engine);
    try {
      setData(await api<JobPage>(`/dashboard/api/jobs?${q}`));
      setError(undefined);
    } catch (err) {
      setError((err as Error).message);
    }
  };
  const schedule = (): void => {
    if (timer.current !== undefined) return;
    const wait = Math.max(0, REFETCH_MS - (Date.now() - last.current));
    timer.current = window.setTimeout(() => {
      timer.current = undefined;
      void load();
    }, wait);
  };

  useEffect(() => {
    const q = new URLSearchParams();
    if (filters.state !== 'all') q.set('state', filters.state);
    if (filters.engine !== 'all') q.set('engine', filters.engine);
    if (filters.page > 1) q.set('page', String(filters.page));
    const hash = `#/jobs${q.size ? `?${q}` : ''}`;
    if (location.hash !== hash) history.replaceState(null, '', hash);
    void load();
    return () => window.clearTimeout(timer.current);
  }, [filters.state, filters.engine, filters.page]);

  useJobChanges((changes) => {
    if (!data) return;
    let touched = false;
    const rows = data.jobs.map((r): JobRow => {
      const c = changes.filter((x) => x.jobId === r.id).at(-1);
      if (!c) return r;
      touched = true;
      const status = changeToStatus(c.event);
      return {
        ...r,
        ...(status ? { status } : {}),
        ...(c.event === 'progress' && typeof c.progress === 'number' ? { progress: c.progress } : {}),
      };
    });
    if (touched) setData({ ...data, jobs: rows });
    // New jobs, or rows that moved out of the filter: read the page again (throttled).
    const relevant = changes.some((c) => c.event !== 'progress' && (filters.engine === 'all' || c.engine === filters.engine));
    if (relevant) schedule();
  });

  const engines = overview?.queues.map((q) => q.engine) ?? [];
  return (
    <section>
      <div class="filters">
        <label>
          State{' '}
          <select
            value={filters.state}
            data-testid="filter-state"
            onChange={(e) => setFilters({ ...filters, state: (e.target as HTMLSelectElement).value, page: 1 })}
          >
            {STATES.map((s) => (
              <option value={s}>{s}</option>
            ))}
          </select>
        </label>
        <label>
          Engine{' '}
          <select
            value={filters.engine}
            data-testid="filter-engine"
            onChange={(e) => setFilters({ ...filters, engine: (e.target as HTMLSelectElement).value, page: 1 })}
          >
            <option value="all">all</option>
            {engines.map((s) => (
              <option value={s}>{s}</option>
            ))}
          </select>
        </label>
        <span class="muted small">
          {data ? `${data.total} job(s)` : ''}
          {error ? <span class="error-text"> {error}</span> : null}
        </span>
      </div>
      <table class="grid jobs" data-testid="jobs-table">
        <thead>
          <tr>
            <th>Job</th>
            <th>Engine</th>
            <th>Status</th>
            <th>Progress</th>
            <th class="num">Attempts</th>
            <th>Input</th>
            <th>Created</th>
            <th class="num">Run</th>
            <th>Error</th>
          </tr>
        </thead>
        <tbody>
          {data?.jobs.length === 0 ? (
            <tr>
              <td colSpan={9} class="muted">
                No jobs match.
              </td>
            </tr>
          ) : null}
          {data?.jobs.map((j) => (
            <tr data-job-id={j.id} data-status={j.status}>
              <td>
                <a href={`#/jobs/${j.id}`} class="mono">
                  {j.id}
                </a>
              </td>
              <td>{j.engine}</td>
              <td>
                <StatusBadge status={j.status} />
              </td>
              <td>
                <progress max={1} value={j.progress} />
              </td>
              <td class="num">{j.attempts}</td>
              <td class="small">{j.input ? `${j.input.name} · ${j.input.width}×${j.input.height} · ${bytes(j.input.bytes)}` : '–'}</td>
              <td class="small">{ago(j.createdAt)}</td>
              <td class="num">{j.startedAt && j.finishedAt ? ms(Date.parse(j.finishedAt) - Date.parse(j.startedAt)) : '–'}</td>
              <td class="small">
                {j.error ? (
                  <span title={j.error.message}>
                    <code>{j.error.code}</code>
                  </span>
                ) : (
                  ''
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {data && data.pages > 1 ? (
        <div class="pager">
          <button type="button" disabled={filters.page <= 1} onClick={() => setFilters({ ...filters, page: filters.page - 1 })}>
            ← Newer
          </button>
          <span>
            page {data.page} of {data.pages}
          </span>
          <button
            type="button"
            disabled={filters.page >= data.pages}
            onClick={() => setFilters({ ...filters, page: filters.page + 1 })}
            data-testid="next-page"
          >
            Older →
          </button>
        </div>
      ) : null}
    </section>
  );
}
