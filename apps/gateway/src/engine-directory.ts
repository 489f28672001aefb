import type { RedisConnection as Redis } from '@photoenhance/queue';
import { ApiError, type HostState } from '@photoenhance/contracts';
import { listHosts, offeredEngines } from '@photoenhance/queue';

interface Snapshot {
  at: number;
  hosts: HostState[];
  offered: string[];
}

export interface EngineListing {
  name: string;
  kind?: 'resident' | 'oneshot';
  version?: string;
  default: boolean;
  capabilities?: { options: string[]; scales: number[]; formats: string[] };
  hosts: Array<{ hostId: string; poolSize: number; admission: string }>;
}

/**
 * Which engines exist: what live worker hosts announce in their heartbeats, engines a host has offered before (a host
 * that is away for a moment leaves its engines known: 503 NO_WORKER_FOR_ENGINE, not 400 UNKNOWN_ENGINE), plus engines
 * configured as known.
 */
export class EngineDirectory {
  private cache: Snapshot | undefined;
  /** The read from Redis in flight, and the one queued behind it for callers that arrived after it started. */
  private reading: Promise<Snapshot> | undefined;
  private queued: Promise<Snapshot> | undefined;

  constructor(
    private readonly redis: Redis,
    private readonly known: readonly string[],
    private readonly defaultEngine: string,
    private readonly cacheMs = 1000,
  ) {}

  async hosts(fresh = false): Promise<HostState[]> {
    return (await this.read(fresh)).hosts;
  }

  /**
   * The cached snapshot, or with `fresh` one read after the call: a read already in flight began before this caller
   * and may miss what it waits for, so the caller waits for the next read, which every caller that arrives meanwhile
   * shares. Refusals re-read fresh; this keeps a flood of them (no worker up, a client looping on a typo) at one read
   * in flight at a time instead of one per request.
   */
  private read(fresh: boolean): Promise<Snapshot> {
    if (!fresh && this.cache && Date.now() - this.cache.at < this.cacheMs) return Promise.resolve(this.cache);
    if (!this.reading) {
      const at = Date.now();
      this.reading = Promise.all([listHosts(this.redis), offeredEngines(this.redis)])
        .then(([hosts, offered]) => (this.cache = { at, hosts, offered }))
        .finally(() => {
          this.reading = undefined;
        });
      return this.reading;
    }
    if (!fresh) return this.reading;
    this.queued ??= this.reading
      .catch(() => undefined)
      .then(() => {
        this.queued = undefined;
        return this.read(true);
      });
    return this.queued;
  }

  async list(fresh = false): Promise<EngineListing[]> {
    const byName = new Map<string, EngineListing>();
    const ensure = (name: string): EngineListing => {
      let e = byName.get(name);
      if (!e) {
        e = { name, default: name === this.defaultEngine, hosts: [] };
        byName.set(name, e);
      }
      return e;
    };
    const { hosts, offered } = await this.read(fresh);
    for (const name of [this.defaultEngine, ...this.known, ...offered]) ensure(name);
    for (const host of hosts) {
      for (const offer of host.engines) {
        const e = ensure(offer.name);
        e.kind = offer.kind;
        if (offer.version) e.version = offer.version;
        if (offer.capabilities) e.capabilities = offer.capabilities;
        e.hosts.push({ hostId: host.hostId, poolSize: offer.poolSize, admission: host.admission.state });
      }
    }
    return [...byName.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  /** 400 UNKNOWN_ENGINE for a name nobody knows. Re-read before refusing, so an engine a worker has just offered counts. */
  async assertKnown(engine: string): Promise<void> {
    let names = (await this.list()).map((e) => e.name);
    if (!names.includes(engine)) names = (await this.list(true)).map((e) => e.name);
    if (!names.includes(engine)) {
      throw new ApiError('UNKNOWN_ENGINE', `There is no engine "${engine}"; available: ${names.join(', ')}`, {
        extensions: { engine, available: names },
      });
    }
  }

  /**
   * A known engine that no live worker host offers: 503 NO_WORKER_FOR_ENGINE with Retry-After (a job would wait for a
   * worker nobody may start), or, with ACCEPT_WITHOUT_WORKER, the warning the 202 answer carries. Undefined when offered.
   * The host list is re-read before refusing, so a worker that just came up is not missed through the cache.
   */
  async checkOffered(engine: string, o: { acceptWithoutWorker: boolean; retryAfterSeconds: number }): Promise<string | undefined> {
    const offered = (list: EngineListing[]): boolean => list.some((e) => e.name === engine && e.hosts.length > 0);
    if (offered(await this.list()) || offered(await this.list(true))) return undefined;
    const live = (await this.list()).filter((e) => e.hosts.length > 0).map((e) => e.name);
    const what = `No live worker host offers the engine "${engine}"${live.length ? ` (live workers offer: ${live.join(', ')})` : ' (no worker host is running)'}`;
    if (o.acceptWithoutWorker) return `${what}; the job waits until a worker that runs it starts (ACCEPT_WITHOUT_WORKER=true)`;
    throw new ApiError('NO_WORKER_FOR_ENGINE', what, {
      extensions: { engine, offered: live, retryAfterSeconds: o.retryAfterSeconds },
      headers: { 'retry-after': String(o.retryAfterSeconds) },
    });
  }
}
