import { render } from 'preact';
import { live } from './api';
import { useHashRoute, useLive } from './hooks';
import { BatchesView } from './views/batches';
import { HostsView } from './views/hosts';
import { JobPage } from './views/job';
import { JobsView } from './views/jobs';
import { QueueView } from './views/queue';
import './styles.css';

const TABS = [
  ['queue', 'Queue'],
  ['hosts', 'Hosts'],
  ['jobs', 'Jobs'],
  ['batches', 'Batches'],
] as const;

function App() {
  const route = useHashRoute();
  const store = useLive();
  const [view = 'queue', arg] = route;
  const holding = store.overview?.hosts.filter((h) => h.admission?.state === 'holding').length ?? 0;
  return (
    <div class="app">
      <header>
        <div class="brand">
          PhotoEnhance <span>operations</span>
        </div>
        <nav>
          {TABS.map(([id, label]) => (
            <a href={`#/${id}`} class={view === id ? 'active' : ''} data-testid={`tab-${id}`}>
              {label}
              {id === 'hosts' && holding > 0 ? <span class="pill amber">{holding} holding</span> : null}
              {id === 'queue' && store.overview ? (
                <span class="pill">{store.overview.totals.queued + store.overview.totals.active}</span>
              ) : null}
            </a>
          ))}
        </nav>
        <div class="links">
          <a href="/admin/queues" target="_blank" rel="noopener">
            bull-board ↗
          </a>
          <a href="/docs" target="_blank" rel="noopener">
            API docs ↗
          </a>
          <span class={`live ${store.connected ? 'on' : 'off'}`} data-testid="live-indicator" title="Live updates (server-sent events)">
            {store.connected ? 'live' : 'reconnecting…'}
          </span>
        </div>
      </header>
      <main>
        {view === 'queue' && <QueueView />}
        {view === 'hosts' && <HostsView />}
        {view === 'jobs' && !arg && <JobsView />}
        {view === 'jobs' && arg && <JobPage id={arg} />}
        {view === 'batches' && <BatchesView id={arg} />}
      </main>
    </div>
  );
}

live.start();
render(<App />, document.getElementById('app')!);
