import type { ComponentChildren } from 'preact';
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

  if (error && !d)
    return (
      <p class="error-text" data-testid="job-error">
        {error}
      </p>
    );
  if (!d) return <p class="muted">Loading…</p>;
  const v = d.view;
  const final = v.status === 'completed' || v.status === 'failed' || v.status === 'canceled';
  // Until there is a result every option counts as asked for; after, the ones the engine ignored are listed once, apart.
  const entries = Object.entries(v.options);
  const applied = v.result ? entries.filter(([k]) => k in v.result!.applied) : entries;
  const notApplied = v.result ? entries.filter(([k]) => !(k in v.result!.applied)) : [];
  return (
    <section class="job" data-testid="job-page" data-status={v.status}>
      <p>
        <a href="#/jobs">← Jobs</a>
      </p>
      <div class="job-head">
        <h2 class="mono">{v.id}</h2>
        <StatusBadge status={v.status} />
        {!final ? <progress max={1} value={v.progress} /> : null}
        <span class="spacer" />
        {v.status === 'failed' ? (
          <ActionButton
            label="Retry"
            kind="primary"
            testId="job-retry"
            run={async () => {
              await post(`/dashboard/api/jobs/${v.id}/retry`);
              await load();
            }}
          />
        ) : null}
        {v.status !== 'canceled' ? (
          <ActionButton
            label={final ? 'Delete' : 'Cancel'}
            kind="danger"
            testId="job-cancel"
            run={async () => {
              await post(`/dashboard/api/jobs/${v.id}/cancel`);
              await load();
            }}
          />
        ) : null}
        {v.status === 'completed' ? (
          <a class="button" href={v.links.result}>
            Download result
          </a>
        ) : null}
      </div>
      {v.error ? (
        <div class="problem">
          <code>{v.error.code}</code> {v.error.message}
        </div>
      ) : null}
      {v.lastError && !v.error ? (
        <div class="problem soft">
          Previous attempt: <code>{v.lastError.code}</code> {v.lastError.message}
        </div>
      ) : null}
      {d.thumbnails.input && d.thumbnails.output ? (
        <Compare
          before={d.thumbnails.input}
          after={d.thumbnails.output}
          ratio={v.result ? v.result.width / v.result.height : v.input.width / v.input.height}
          caption={
            <>
              Before · {v.input.name} · {v.input.width}×{v.input.height} {v.input.format} · {bytes(v.input.bytes)} — After
              {v.result ? ` · ${v.result.width}×${v.result.height} ${v.result.format} · ${bytes(v.result.bytes)}` : ''}
            </>
          }
        />
      ) : (
        <div class="thumbs">
          <figure>
            {d.thumbnails.input ? (
              <img src={d.thumbnails.input} alt="before" data-testid="thumb-input" />
            ) : (
              <div class="thumb-missing">no input</div>
            )}
            <figcaption>
              Before · {v.input.name} · {v.input.width}×{v.input.height} {v.input.format} · {bytes(v.input.bytes)}
            </figcaption>
          </figure>
          <figure>
            {d.thumbnails.output ? (
              <img src={d.thumbnails.output} alt="after" data-testid="thumb-output" />
            ) : (
              <div class="thumb-missing">{v.status === 'completed' ? 'no output' : `not ready (${v.status})`}</div>
            )}
            <figcaption>
              After{v.result ? ` · ${v.result.width}×${v.result.height} ${v.result.format} · ${bytes(v.result.bytes)}` : ''}
            </figcaption>
          </figure>
        </div>
      )}
      <div class="job-grid">
        <div>
          <h3>Timings</h3>
          <dl>
            <dt>Created</dt>
            <dd>{time(v.createdAt)}</dd>
            <dt>Started</dt>
            <dd>{time(v.startedAt)}</dd>
            <dt>Finished</dt>
            <dd>{time(v.finishedAt)}</dd>
            <dt>Waited</dt>
            <dd>{ms(v.timings?.queuedMs)}</dd>
            <dt>Ran</dt>
            <dd>{ms(v.timings?.runMs)}</dd>
            {d.engineRun
              ? Object.entries(d.engineRun.timings).map(([k, t]) => (
                  <>
                    <dt class="muted">{timingLabel(k)}</dt>
                    <dd>{ms(t)}</dd>
                  </>
                ))
              : null}
          </dl>
          <h3>Attempts</h3>
          <dl>
            <dt>Started</dt>
            <dd>
              {d.attemptsStarted} of {d.maxAttempts}
            </dd>
            <dt>Made</dt>
            <dd>{d.attemptsMade}</dd>
            {d.engineRun ? (
              <>
                <dt>Ran on</dt>
                <dd>
                  {d.engineRun.engine.host} · {d.engineRun.engine.name} {d.engineRun.engine.version}
                  {d.engineRun.engine.pid ? ` · pid ${d.engineRun.engine.pid}` : ''}
                </dd>
              </>
            ) : null}
          </dl>
        </div>
        <div>
          <h3>Options</h3>
          <dl data-testid="job-options">
            {applied.map(([k, val]) => (
              <>
                <dt title={k}>{optionLabel(k)}</dt>
                <dd>{showValue(val)}</dd>
              </>
            ))}
          </dl>
          {notApplied.length ? (
            <p class="muted small" data-testid="not-applied">
              Not applied by {v.engine}: {notApplied.map(([k]) => optionLabel(k)).join(', ')}
            </p>
          ) : null}
        </div>
      </div>
      <h3>
        Engine log <span class="muted small">({d.logCount} line(s))</span>
      </h3>
      <pre class="log" data-testid="job-log">
        {d.logs.length ? d.logs.join('\n') : 'No log lines.'}
      </pre>
    </section>
  );
}

const OPTION_LABELS: Record<string, string> = {
  scale: 'Scale',
  version: 'GFPGAN model',
  weight: 'Face blend weight',
  onlyCenterFace: 'Centre face only',
  aligned: 'Aligned face crop',
  bgUpsampler: 'Background upsampler',
  bgTile: 'Background tile',
  format: 'Output format',
  quality: 'Quality',
  priority: 'Priority',
  denoise: 'Denoise',
  tone: 'Tone',
  sharpen: 'Sharpen',
};

/** API field names for people: a known label, else camelCase split into words. */
export function optionLabel(key: string): string {
  return OPTION_LABELS[key] ?? words(key);
}

/** Engine timing keys (`decodeMs`, `upscaleMs`) as "Engine: decode". */
export function timingLabel(key: string): string {
  return `Engine: ${words(key.replace(/Ms$/, '')).toLowerCase()}`;
}

function words(key: string): string {
  const w = key
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .replace(/[_-]+/g, ' ')
    .trim();
  return w.charAt(0).toUpperCase() + w.slice(1);
}

function showValue(v: unknown): string {
  if (v === true) return 'yes';
  if (v === false) return 'no';
  return String(v);
}

/**
 * Before and after over each other at the same scale (both fill the same box, the result's aspect ratio), with a
 * handle to drag across: the "before" layer is clipped to the left of it.
 */
function Compare(props: { before: string; after: string; ratio: number; caption: ComponentChildren }) {
  const [pos, setPos] = useState(50);
  return (
    <figure class="compare" data-testid="compare">
      <div class="compare-box" style={{ aspectRatio: String(props.ratio > 0 ? props.ratio : 1) }}>
        <img src={props.after} alt="after" data-testid="thumb-output" />
        <img
          src={props.before}
          alt="before"
          data-testid="thumb-input"
          class="compare-before"
          style={{ clipPath: `inset(0 ${100 - pos}% 0 0)` }}
        />
        <div class="compare-handle" style={{ left: `${pos}%` }} />
        <span class="compare-tag left">Before</span>
        <span class="compare-tag right">After</span>
        <input
          type="range"
          min={0}
          max={100}
          step={1}
          value={pos}
          aria-label="Before / after"
          data-testid="compare-slider"
          onInput={(e) => setPos(Number((e.currentTarget as HTMLInputElement).value))}
        />
      </div>
      <figcaption>{props.caption}</figcaption>
    </figure>
  );
}
