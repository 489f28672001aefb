import type { JobChange, Overview, Sample } from './types';

/** Calls to the gateway's dashboard API; an expired or missing operator session goes to the sign-in form. */
export async function api<T>(path: string, init: RequestInit = {}): Promise<T> {
  const headers = new Headers(init.headers);
  if (init.body !== undefined && !headers.has('content-type')) headers.set('content-type', 'application/json');
  const res = await fetch(path, { ...init, headers, credentials: 'same-origin' });
  if (res.status === 401) {
    location.href = `/dashboard/login?next=${encodeURIComponent(location.pathname + location.hash)}`;
    throw new Error('sign-in required');
  }
  const text = await res.text();
  const body = text ? (JSON.parse(text) as unknown) : undefined;
  if (!res.ok) {
    const p = body as { detail?: string; title?: string } | undefined;
    throw new Error(p?.detail ?? p?.title ?? `${res.status} ${res.statusText}`);
  }
  return body as T;
}

export const post = <T>(path: string, body?: unknown): Promise<T> =>
  api<T>(path, { method: 'POST', ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });

const HOUR = 3_600_000;

type Listener = () => void;
type JobListener = (changes: JobChange[]) => void;

/**
 * The one live connection: an EventSource on /dashboard/api/events. Views read `live.overview` / `live.samples` and
 * re-render on `subscribe`; job changes go to `onJobs` listeners. The browser reconnects by itself after a drop.
 */
class LiveStore {
  overview: Overview | undefined;
  samples: Sample[] = [];
  connected = false;
  private readonly listeners = new Set<Listener>();
  private readonly jobListeners = new Set<JobListener>();
  private source: EventSource | undefined;

  start(): void {
    if (this.source) return;
    const es = new EventSource('/dashboard/api/events');
    this.source = es;
    es.addEventListener('open', () => this.set(() => (this.connected = true)));
    es.addEventListener('error', () => this.set(() => (this.connected = false)));
    es.addEventListener('snapshot', (e) => {
      const data = JSON.parse((e as MessageEvent<string>).data) as Overview & { samples: Sample[] };
      this.set(() => {
        this.connected = true;
        this.samples = data.samples;
        this.overview = data;
      });
    });
    es.addEventListener('overview', (e) => {
      const data = JSON.parse((e as MessageEvent<string>).data) as Overview;
      this.set(() => {
        this.overview = data;
        const last = this.samples.at(-1);
        if (data.sample && (!last || data.sample.at > last.at)) {
          this.samples = [...this.samples.filter((s) => s.at > data.sample!.at - HOUR), data.sample];
        }
      });
    });
    es.addEventListener('jobs', (e) => {
      const changes = JSON.parse((e as MessageEvent<string>).data) as JobChange[];
      for (const fn of this.jobListeners) fn(changes);
    });
  }

  private set(fn: () => void): void {
    fn();
    for (const l of this.listeners) l();
  }

  subscribe(fn: Listener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  onJobs(fn: JobListener): () => void {
    this.jobListeners.add(fn);
    return () => this.jobListeners.delete(fn);
  }
}

export const live = new LiveStore();
