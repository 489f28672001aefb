import { useMemo, useState } from 'preact/hooks';
import { api } from '../api';
import { TimeChart } from '../chart';
import { ActionButton } from '../components';
import { ago, bytes, ms, pct, time } from '../format';
import { useLive, useTick } from '../hooks';
import type { EngineProcess, HostEvent, HostState, Sample } from '../types';

/** Share of the limit where the bar turns amber (the governor's soft recycle mark) and red. */
const SOFT = 0.75;
const HARD = 0.9;
const GiB = 1024 ** 3;

export function HostsView() {
  const { overview, samples } = useLive();
  useTick(5000);
  if (!overview) return <p class="muted">Connecting…</p>;
  if (overview.hosts.length === 0)
    return (
      <p class="muted" data-testid="no-hosts">
        No worker host is publishing heartbeats. Start a worker (photoenhance start, or npm start -w @photoenhance/worker).
      </p>
    );
  return (
    <section>
      {overview.hosts.map((h) => (
        <HostCard host={h} samples={samples} events={overview.hostEvents.filter((e) => e.hostId === h.hostId)} />
      ))}
    </section>
  );
}

function HostCard(props: { host: HostState; samples: Sample[]; events: HostEvent[] }) {
  const h = props.host;
  const holding = h.admission?.state === 'holding';
  const used = h.memory.totalBytes - h.memory.availableBytes;
  const data = useMemo(() => {
    const rows = props.samples.filter((s) => s.hosts[h.hostId]);
    return [
      rows.map((s) => s.at / 1000),
      rows.map((s) => s.hosts[h.hostId]!.usedBytes / GiB),
      rows.map((s) => s.hosts[h.hostId]!.thresholdUsedBytes / GiB),
      rows.map((s) => s.hosts[h.hostId]!.totalBytes / GiB),
    ] as [number[], number[], number[], number[]];
  }, [props.samples, h.hostId]);
  return (
    <div class={`host ${holding ? 'holding' : ''}`} data-testid={`host-${h.hostId}`} data-admission={h.admission?.state}>
      <div class="host-head">
        <h2>
          {h.hostId}{' '}
          <span class="muted small">
            {h.hostname}
            {h.pid ? ` · pid ${h.pid}` : ''}
          </span>
        </h2>
        <span class={`badge ${holding ? 's-holding' : 's-admitting'}`} data-testid={`admission-${h.hostId}`}>
          {h.admission?.state ?? 'unknown'}
        </span>
        {holding ? (
          <span class="reason" data-testid={`admission-reason-${h.hostId}`}>
            {h.admission.reason}
            {h.admission.detail ? ` — ${h.admission.detail}` : ''}
          </span>
        ) : null}
        <span class="muted small">
          since {ago(h.admission?.since)} · heartbeat {ago(h.updatedAt)}
        </span>
      </div>
      <div class="host-body">
        <div class="host-facts">
          <dl>
            <dt>Memory used</dt>
            <dd>
              {bytes(used)} of {bytes(h.memory.totalBytes)} ({pct(h.memory.usedRatio)})
            </dd>
            <dt>Available</dt>
            <dd>{bytes(h.memory.availableBytes)}</dd>
            <dt>Admission floor</dt>
            <dd>
              {bytes(h.admission?.thresholds?.minAvailableBytes)} available · max used {pct(h.admission?.thresholds?.maxUsedRatio)}
            </dd>
            <dt>Memory pressure</dt>
            <dd>
              {h.memory.pressureSome10 === undefined
                ? 'not reported (no PSI)'
                : `${h.memory.pressureSome10.toFixed(1)} % (some avg10; holds above ${h.admission?.thresholds?.maxPressureSome10 ?? '–'} %)`}
            </dd>
            <dt>Enforcement</dt>
            <dd data-testid="enforcement">
              {enforcementWords(h.enforcement?.mode)}
              {h.enforcement?.reason ? (
                <details class="diagnostic">
                  <summary class="muted small">Kernel diagnostic</summary>
                  <span class="muted small mono">{h.enforcement.reason}</span>
                </details>
              ) : null}
            </dd>
            <dt>Recycles</dt>
            <dd>
              {Object.entries(h.recycles ?? {})
                .map(([r, n]) => `${r} ×${n}`)
                .join(', ') || 'none'}
            </dd>
          </dl>
          <FloorEditor host={h} />
        </div>
        <TimeChart
          title="Host memory used vs admission threshold (GiB)"
          testId={`chart-host-${h.hostId}`}
          data={data}
          series={[
            { label: 'used', color: '#60a5fa', fill: '#60a5fa22' },
            { label: 'admission threshold', color: '#f87171', dash: [6, 4] },
            { label: 'total', color: '#475569', dash: [2, 4] },
          ]}
          yFormat={(v) => `${v.toFixed(1)} G`}
          height={180}
        />
      </div>
      {h.gpu ? <GpuPanel host={h} /> : null}
      <h3>Engine processes</h3>
      <table class="grid">
        <thead>
          <tr>
            <th>Engine</th>
            <th>PID</th>
            <th>State</th>
            <th style="width:34%">RSS / limit</th>
            {h.gpu ? <th>GPU</th> : null}
            <th class="num">Peak</th>
            <th class="num">Jobs done</th>
            <th class="num">Uptime</th>
          </tr>
        </thead>
        <tbody>
          {(h.processes ?? []).length === 0 ? (
            <tr>
              <td colSpan={h.gpu ? 8 : 7} class="muted">
                No engine process running (one-shot engines start per job).
              </td>
            </tr>
          ) : null}
          {(h.processes ?? []).map((p) => (
            <ProcessRow p={p} gpuColumn={!!h.gpu} />
          ))}
        </tbody>
      </table>
      <h3>Timeline</h3>
      <Timeline events={props.events} />
    </div>
  );
}

/**
 * The host's GPUs as its worker samples them (nvidia-smi): memory used of total with the free figure, utilisation,
 * and which engine processes hold how much. Off (no GPU or driver) and failing sampling are said in words.
 */
function GpuPanel({ host }: { host: HostState }) {
  const g = host.gpu!;
  const id = host.hostId;
  if (g.state === 'off') {
    return (
      <p class="muted small" data-testid={`gpu-off-${id}`}>
        GPU governance off: {g.reason}. Admission and placement use host memory only.
      </p>
    );
  }
  return (
    <>
      <h3>GPUs</h3>
      {g.state === 'error' ? (
        <p class="reason" data-testid={`gpu-error-${id}`}>
          GPU figures cannot be read ({g.reason}); GPU engines hold until they can. Last figures shown.
        </p>
      ) : null}
      <table class="grid" data-testid={`gpus-${id}`}>
        <thead>
          <tr>
            <th>GPU</th>
            <th>Name</th>
            <th style="width:34%">Memory used / total</th>
            <th class="num">Free</th>
            <th class="num">Utilisation</th>
            <th>Held by engines</th>
          </tr>
        </thead>
        <tbody>
          {g.gpus.length === 0 ? (
            <tr>
              <td colSpan={6} class="muted">
                No GPU sampled yet.
              </td>
            </tr>
          ) : null}
          {g.gpus.map((x) => {
            const ratio = x.totalBytes > 0 ? x.usedBytes / x.totalBytes : 0;
            const tone = ratio >= HARD ? 'red' : ratio >= SOFT ? 'amber' : 'ok';
            const holders = (host.processes ?? []).filter((p) => p.gpu?.uuid === x.uuid);
            return (
              <tr data-testid={`gpu-${id}-${x.index}`}>
                <td>
                  <b>{x.index}</b>
                </td>
                <td title={x.uuid}>{x.name || '–'}</td>
                <td>
                  <div class={`bar ${tone}`} data-tone={tone} title={`${bytes(x.usedBytes)} used of ${bytes(x.totalBytes)}`}>
                    <div class="fill" style={{ width: `${Math.min(100, ratio * 100).toFixed(1)}%` }} />
                    <span class="bar-label">
                      {bytes(x.usedBytes)} / {bytes(x.totalBytes)}
                    </span>
                  </div>
                </td>
                <td class="num" data-testid={`gpu-free-${id}-${x.index}`}>
                  {bytes(x.freeBytes)}
                </td>
                <td class="num">{x.utilizationPercent === undefined ? 'not reported' : `${x.utilizationPercent} %`}</td>
                <td data-testid={`gpu-holders-${id}-${x.index}`}>
                  {holders.length === 0 ? (
                    <span class="muted">none</span>
                  ) : (
                    holders.map((p) => `${p.profile} (pid ${p.pid ?? '–'}) ${bytes(p.gpu!.usedBytes)}`).join(', ')
                  )}
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
      <p class="muted small">
        Sampled {ago(g.sampledAt)}
        {g.sampleCostMs !== undefined ? ` · one sample costs ${g.sampleCostMs.toFixed(1)} ms` : ''} · {g.reason}
      </p>
    </>
  );
}

function ProcessRow({ p, gpuColumn }: { p: EngineProcess; gpuColumn: boolean }) {
  const ratio = p.limitBytes > 0 ? p.rssBytes / p.limitBytes : 0;
  const tone = ratio >= HARD ? 'red' : ratio >= SOFT ? 'amber' : 'ok';
  return (
    <tr data-testid={`proc-${p.profile}-${p.pid ?? 'none'}`}>
      <td>
        <b>{p.profile}</b>
      </td>
      <td>{p.pid ?? '–'}</td>
      <td>
        <span class={`badge s-${p.state}`}>{p.state}</span>
      </td>
      <td>
        <div
          class={`bar ${tone}`}
          title={`${bytes(p.rssBytes)} of ${bytes(p.limitBytes)} (amber at ${SOFT * 100} %, red at ${HARD * 100} %)`}
          data-tone={tone}
        >
          <div class="fill" style={{ width: `${Math.min(100, ratio * 100).toFixed(1)}%` }} />
          <div class="soft" style={{ left: `${SOFT * 100}%` }} />
          <span class="bar-label">
            {bytes(p.rssBytes)} / {bytes(p.limitBytes)}
          </span>
        </div>
      </td>
      {gpuColumn ? (
        <td data-testid={`proc-gpu-${p.profile}-${p.pid ?? 'none'}`}>
          {p.gpu ? `GPU ${p.gpu.index} · ${bytes(p.gpu.usedBytes)}` : <span class="muted">not pinned</span>}
        </td>
      ) : null}
      <td class="num">{bytes(p.peakBytes)}</td>
      <td class="num">{p.jobsDone}</td>
      <td class="num">{ms(p.uptimeMs)}</td>
    </tr>
  );
}

function Timeline({ events }: { events: HostEvent[] }) {
  if (events.length === 0) return <p class="muted small">No admission changes or recycles seen yet.</p>;
  return (
    <ol class="timeline" data-testid="timeline">
      {[...events]
        .reverse()
        .slice(0, 40)
        .map((e) => (
          <li class={`t-${e.kind}`}>
            <span class="t-time">
              {time(e.at)}
              {e.approximate ? '≈' : ''}
            </span>
            <span class={`badge t-${e.kind}`}>{e.kind === 'recycle' ? 'recycle' : e.kind === 'hold' ? 'holding' : 'admitting'}</span>
            <span class="t-reason">{e.reason}</span>
            {e.profile ? (
              <span class="muted small">
                {e.profile}
                {e.pid ? ` (pid ${e.pid})` : ''}
              </span>
            ) : null}
            {e.detail ? <span class="muted small">{e.detail}</span> : null}
          </li>
        ))}
    </ol>
  );
}

/** Raise or lower the host's admission floor at run time (PUT /v1/system/hosts/:id/admission). */
function FloorEditor({ host }: { host: HostState }) {
  const current = (host.admission?.thresholds?.minAvailableBytes ?? 0) / GiB;
  const [value, setValue] = useState(current.toFixed(2));
  const set = (gib: number) =>
    api(`/v1/system/hosts/${encodeURIComponent(host.hostId)}/admission`, {
      method: 'PUT',
      body: JSON.stringify({ minAvailableBytes: Math.round(gib * GiB) }),
    });
  return (
    <div class="floor">
      <label>
        Admission floor (GiB available)
        <input
          type="number"
          min="0"
          step="0.25"
          value={value}
          onInput={(e) => setValue((e.target as HTMLInputElement).value)}
          data-testid={`floor-input-${host.hostId}`}
        />
      </label>
      <ActionButton label="Apply" kind="primary" testId={`floor-apply-${host.hostId}`} run={() => set(Number(value))} />
    </div>
  );
}

/** The enforcement mode as a sentence an operator can act on; the governor's raw diagnostic sits behind a disclosure. */
export function enforcementWords(mode: string | undefined): string {
  switch (mode) {
    case 'cgroup-v2':
    case 'cgroup-v1':
      return `Each engine's memory limit is enforced by the kernel (${mode.replace('-', ' ')}): an engine over it is stopped at once.`;
    case 'watchdog':
      return "Each engine's memory limit is enforced by the worker's RSS watchdog (no writable cgroup here): an engine over it is stopped within a sampling period.";
    default:
      return 'Not reported by this worker.';
  }
}
