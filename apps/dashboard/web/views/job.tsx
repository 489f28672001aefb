import { useEffect, useRef, useState } from 'preact/hooks';
import { api, post } from '../api';
import { ActionButton, StatusBadge } from '../components';
import { bytes, ms, time } from '../format';
import { useJobChanges } from '../hooks';
import type { JobDetail } from '../types';

export function JobPage({ id }: { id: string }) {
  const [d, setD] = useState<JobDetail | undefined>();
  const [error, setError] = useState<string | undefined>();
  const timer = useRef<number | undefined>(undefined);
  const load = async (): Promise<void> => {
    try {
      setD(await api<JobDetail>(`/dashboard/api/jobs/${encodeURIComponent(id)}`));
      setError(undefined);
    } catch (err) {
      setError((err as Error).message);
    }
  };
  useEffect(() => {
    void load();
    return () => window.clearTimeout(timer.current);
  }, [id]);
  useJobChanges((changes) => {
    if (!changes.some((c) => c.jobId === id)) return;
    window.clearTimeout(timer.current);
    timer.current = window.setTimeout(() => void load(), 200);
  });

  if (error && !d) return <p class="error-text" data-testid="job-error">{error}</p>;
  if (!d) return <p class="muted">Loading…</p>;
  const v = d.view;
  const final = v.status === 'completed' || v.status === 'failed' || v.status === 'canceled';
  return (
    <section class="job" data-testid="job-page" data-status={v.status}>
      <p><a href="#/jobs">← Jobs</a></p>
      <div class="job-head">
        <h2 class="mono">{v.id}</h2>
        <StatusBadge status={v.status} />
        {!final ? <progress max={1} value={v.progress} /> : null}
        <span class="spacer" />
        {v.status === 'failed' ? <ActionButton label="Retry" kind="primary" testId="job-retry" run={async () => { await post(`/dashboard/api/jobs/${v.id}/retry`); await load(); }} /> : null}
        {v.status !== 'canceled' ? <ActionButton label={final ? 'Delete' : 'Cancel'} kind="danger" testId="job-cancel" run={async () => { await post(`/dashboard/api/jobs/${v.id}/cancel`); await load(); }} /> : null}
        {v.status === 'completed' ? <a class="button" href={v.links.result}>Download result</a> : null}
      </div>
      {v.error ? <div class="problem"><code>{v.error.code}</code> {v.error.message}</div> : null}
      {v.lastError && !v.error ? <div class="problem soft">Previous attempt: <code>{v.lastError.code}</code> {v.lastError.message}</div> : null}
      <div class="thumbs">
        <figure>
          {d.thumbnails.input ? <img src={d.thumbnails.input} alt="before" data-testid="thumb-input" /> : <div class="thumb-missing">no input</div>}
          <figcaption>Before · {v.input.name} · {v.input.width}×{v.input.height} {v.input.format} · {bytes(v.input.bytes)}</figcaption>
        </figure>
        <figure>
          {d.thumbnails.output ? <img src={d.thumbnails.output} alt="after" data-testid="thumb-output" /> : <div class="thumb-missing">{v.status === 'completed' ? 'no output' : `not ready (${v.status})`}</div>}
          <figcaption>After{v.result ? ` · ${v.result.width}×${v.result.height} ${v.result.format} · ${bytes(v.result.bytes)}` : ''}</figcaption>
        </figure>
      </div>
      <div class="job-grid">
        <div>
          <h3>Timings</h3>
          <dl>
            <dt>Created</dt><dd>{time(v.createdAt)}</dd>
            <dt>Started</dt><dd>{time(v.startedAt)}</dd>
            <dt>Finished</dt><dd>{time(v.finishedAt)}</dd>
            <dt>Waited</dt><dd>{ms(v.timings?.queuedMs)}</dd>
            <dt>Ran</dt><dd>{ms(v.timings?.runMs)}</dd>
            {d.engineRun ? Object.entries(d.engineRun.timings).map(([k, t]) => <><dt class="muted">engine {k}</dt><dd>{ms(t)}</dd></>) : null}
          </dl>
          <h3>Attempts</h3>
          <dl>
            <dt>Started</dt><dd>{d.attemptsStarted} of {d.maxAttempts}</dd>
            <dt>Made</dt><dd>{d.attemptsMade}</dd>
            {d.engineRun ? <><dt>Ran on</dt><dd>{d.engineRun.engine.host} · {d.engineRun.engine.name} {d.engineRun.engine.version}{d.engineRun.engine.pid ? ` · pid ${d.engineRun.engine.pid}` : ''}</dd></> : null}
          </dl>
        </div>
        <div>
          <h3>Options</h3>
          <dl>{Object.entries(v.options).map(([k, val]) => <><dt>{k}</dt><dd>{String(val)}{v.result && k in v.result.applied ? '' : v.result ? <span class="muted small"> (not applied)</span> : ''}</dd></>)}</dl>
        </div>
      </div>
      <h3>Engine log <span class="muted small">({d.logCount} line(s))</span></h3>
      <pre class="log" data-testid="job-log">{d.logs.length ? d.logs.join('\n') : 'No log lines.'}</pre>
    </section>
  );
}
