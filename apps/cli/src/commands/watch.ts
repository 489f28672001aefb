import type { HostState } from '@photoenhance/contracts';
import { ApiProblemError, PhotoEnhanceClient } from '@photoenhance/client';
import { CliError, EXIT } from '../exit.js';
import { gatewayUrl } from '../paths.js';
import { paint, type Paint } from '../colour.js';
import type { WatchFlags } from '../specs/watch.js';

/** Queue counts by state, as found in the gateway's answers (absent when it publishes none). */
export type QueueCounts = Partial<Record<'waiting' | 'active' | 'delayed' | 'prioritized' | 'completed' | 'failed' | 'paused', number>>;

export interface WatchSnapshot {
  at: string;
  url: string;
  hosts: HostState[];
  engines: Array<{ name: string; kind?: string; default?: boolean; hosts: Array<{ hostId: string; poolSize: number; admission: string }> }>;
  /** Summed over engines; `undefined` when the gateway publishes no counts under /v1. */
  queue: QueueCounts | undefined;
  /** Engine processes busy/idle/starting over every host (always available, from /v1/system). */
  processes: { busy: number; idle: number; starting: number; stopping: number };
}

/** `photoenhance watch` (declared in specs/watch.ts). */
export async function watch(flags: WatchFlags): Promise<number> {
  const every = Number(flags.interval ?? '1000');
  if (!Number.isInteger(every) || every < 100)
    throw new CliError(
      EXIT.USAGE,
      `error: --interval must be a whole number of milliseconds >= 100; received ${JSON.stringify(flags.interval)}`,
    );
  const client = new PhotoEnhanceClient({ baseUrl: gatewayUrl(flags.url), apiKey: flags.apiKey ?? process.env.PHOTOENHANCE_API_KEY });
  const c = paint(process.stdout);
  const render = (s: WatchSnapshot): string => (flags.json ? `${JSON.stringify(s)}\n` : formatSnapshot(s, c));
  if (flags.once) {
    process.stdout.write(render(await snapshot(client)));
    return EXIT.OK;
  }
  return await live(client, every, render);
}

/** Redraw until Ctrl-C (exit 0: stopping is the normal end of watching). A lost gateway is shown, not fatal. */
async function live(client: PhotoEnhanceClient, every: number, render: (s: WatchSnapshot) => string): Promise<number> {
  const tty = process.stdout.isTTY === true;
  let stop: () => void = () => undefined;
  const stopped = new Promise<void>((r) => (stop = r));
  // `on`, not `once`: a second Ctrl-C (or the terminal's SIGINT arriving next to a forwarded one) must not fall through to
  // Node's default handler and end the process with 130 while it is already stopping.
  const onSignal = (): void => stop();
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  for (let done = false; !done; ) {
    let text: string;
    try {
      text = render(await snapshot(client));
    } catch (err) {
      text = `${new Date().toISOString()}  ${paint(process.stdout)('red', 'error')}: ${err instanceof Error ? err.message : String(err)}\n`;
    }
    process.stdout.write(tty ? `\x1b[H\x1b[2J${text}\n(refreshing every ${every / 1000} s; Ctrl-C to stop)\n` : `${text}\n`);
    // The timer must keep the event loop alive: an unref'd one let the process exit (code 13) after the first frame.
    let timer: NodeJS.Timeout | undefined;
    done = await Promise.race([stopped.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), every)))]);
    clearTimeout(timer);
  }
  // The handlers stay: main() exits right after this returns, and a late second signal must still find one.
  return EXIT.OK;
}

export async function snapshot(client: PhotoEnhanceClient): Promise<WatchSnapshot> {
  const [system, engines] = await Promise.all([
    client.getJson<Record<string, unknown>>('/v1/system'),
    client.getJson<Record<string, unknown>>('/v1/engines').catch((err: unknown) => {
      if (err instanceof ApiProblemError) return { engines: [] };
      throw err;
    }),
  ]);
  const hosts = Array.isArray(system.hosts) ? (system.hosts as HostState[]) : [];
  const engineList = Array.isArray(engines.engines) ? (engines.engines as WatchSnapshot['engines']) : [];
  const processes = { busy: 0, idle: 0, starting: 0, stopping: 0 };
  for (const h of hosts) for (const p of Array.isArray(h.processes) ? h.processes : []) if (p.state in processes) processes[p.state]++;
  return {
    at: new Date().toISOString(),
    url: client.baseUrl,
    hosts,
    engines: engineList,
    queue: findQueueCounts(system, engines),
    processes,
  };
}

const COUNT_KEYS = ['waiting', 'active', 'delayed', 'prioritized', 'completed', 'failed', 'paused'] as const;

/**
 * Queue counts wherever this gateway puts them: `queue`/`queues`/`counts` on /v1/system (one object or one per engine),
 * or `counts`/`queue` on each /v1/engines entry. Read defensively: unknown shapes give `undefined`.
 */
export function findQueueCounts(system: Record<string, unknown>, engines: Record<string, unknown>): QueueCounts | undefined {
  const sum: QueueCounts = {};
  let found = false;
  const add = (o: unknown): void => {
    if (!o || typeof o !== 'object') return;
    const rec = o as Record<string, unknown>;
    // A nested `counts` object (e.g. { engine, counts: {...} }).
    if (rec.counts && typeof rec.counts === 'object') {
      add(rec.counts);
      return;
    }
    for (const k of COUNT_KEYS) {
      const v = rec[k];
      if (typeof v === 'number' && Number.isFinite(v)) {
        sum[k] = (sum[k] ?? 0) + v;
        found = true;
      }
    }
  };
  const addAny = (o: unknown): void => {
    if (Array.isArray(o)) o.forEach(add);
    else if (o && typeof o === 'object' && !COUNT_KEYS.some((k) => k in (o as object)) && !('counts' in (o as object)))
      Object.values(o).forEach(add);
    else add(o);
  };
  for (const k of ['queue', 'queues', 'counts']) if (k in system) addAny(system[k]);
  if (!found && Array.isArray(engines.engines))
    for (const e of engines.engines as Array<Record<string, unknown>>) add(e?.counts ?? e?.queue);
  return found ? sum : undefined;
}

export function formatSnapshot(s: WatchSnapshot, c: Paint = paint({ isTTY: false }, {})): string {
  const lines: string[] = [`photoenhance watch  ${s.url}  ${s.at.replace('T', ' ').replace(/\.\d+Z$/, 'Z')}`];
  const p = s.processes;
  const engineFigures = `engine processes ${p.busy} ${c.state('busy')}, ${p.idle} idle${p.starting ? `, ${p.starting} starting` : ''}${p.stopping ? `, ${p.stopping} stopping` : ''}`;
  if (s.queue) {
    const q = s.queue;
    const order = COUNT_KEYS.filter((k) => q[k] !== undefined).map((k) => `${c.state(k)} ${q[k]}`);
    lines.push(`queue    ${order.join(' · ')}  (${engineFigures})`);
  } else {
    lines.push(`queue    ${engineFigures}; waiting: not published under /v1 by this gateway`);
  }
  const eng = s.engines.map((e) => {
    const pool = e.hosts.reduce((n, h) => n + (h.poolSize ?? 0), 0);
    return `${e.name}${e.default ? '*' : ''} ${e.hosts.length ? `pool ${pool} on ${e.hosts.length} host${e.hosts.length > 1 ? 's' : ''}` : 'no host'}`;
  });
  lines.push(`engines  ${eng.length ? eng.join(' · ') : 'none'}`);
  lines.push(`hosts    ${s.hosts.length}${s.hosts.length ? '' : ' (no worker is running: start one, e.g. npm start)'}`);
  const now = Date.parse(s.at);
  for (const h of s.hosts) {
    const m = h.memory;
    const procs = Array.isArray(h.processes) ? h.processes : [];
    const busy = procs.filter((x) => x.state === 'busy').length;
    const rss = procs.reduce((n, x) => n + (x.rssBytes ?? 0), 0);
    const adm = h.admission ? `${c.state(h.admission.state)}${h.admission.state === 'holding' ? ` (${h.admission.reason})` : ''}` : '?';
    const recycles = h.recycles ? Object.values(h.recycles).reduce((n, x) => n + x, 0) : 0;
    const mem = m
      ? `mem ${Math.round(m.usedRatio * 100)}% used, ${gib(m.availableBytes)} free${m.pressureSome10 !== undefined ? `, psi ${m.pressureSome10.toFixed(1)}` : ''}`
      : 'mem ?';
    const seen = typeof h.updatedAt === 'number' ? `, seen ${((now - h.updatedAt) / 1000).toFixed(1)} s ago` : '';
    lines.push(`  ${h.hostId}  ${adm}  ${mem}  engines ${busy}/${procs.length} busy, rss ${gib(rss)}  recycles ${recycles}${seen}`);
  }
  return `${lines.join('\n')}\n`;
}

function gib(bytes: number): string {
  return bytes >= 1024 ** 3 ? `${(bytes / 1024 ** 3).toFixed(1)} GiB` : `${Math.round(bytes / 1024 ** 2)} MiB`;
}
