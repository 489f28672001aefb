import type { RedisConnection as Redis } from '@photoenhance/queue';
import { ApiError, type HostState } from '@photoenhance/contracts';
import { listHosts } from '@photoenhance/queue';

export interface EngineListing {
  name: string;
  kind?: 'resident' | 'oneshot';
  version?: string;
  default: boolean;
  capabilities?: { options: string[]; scales: number[]; formats: string[] };
  hosts: Array<{ hostId: string; poolSize: number; admission: string }>;
}

/** Which engines exist: what live worker hosts announce in their heartbeats, plus engines configured as known. */
export class EngineDirectory {
  private cache: { at: number; hosts: HostState[] } | undefined;

  constructor(
    private readonly redis: Redis,
    private readonly known: readonly string[],
    private readonly defaultEngine: string,
    private readonly cacheMs = 1000,
  ) {}

  async hosts(): Promise<HostState[]> {
    const now = Date.now();
    if (this.cache && now - this.cache.at < this.cacheMs) return this.cache.hosts;
    const hosts = await listHosts(this.redis);
    this.cache = { at: now, hosts };
    return hosts;
  }

  async list(): Promise<EngineListing[]> {
    const byName = new Map<string, EngineListing>();
    const ensure = (name: string): EngineListing => {
      let e = byName.get(name);
      if (!e) {
        e = { name, default: name === this.defaultEngine, hosts: [] };
        byName.set(name, e);
      }
      return e;
    };
    for (const name of [this.defaultEngine, ...this.known]) ensure(name);
    for (const host of await this.hosts()) {
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

  async assertKnown(engine: string): Promise<void> {
    const names = (await this.list()).map((e) => e.name);
    if (!names.includes(engine)) {
      throw new ApiError('UNKNOWN_ENGINE', `There is no engine "${engine}"; available: ${names.join(', ')}`, { extensions: { engine, available: names } });
    }
  }
}
