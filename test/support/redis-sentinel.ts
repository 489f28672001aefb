import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePorts, redisNode, type RedisNode, type ServerPlacement } from './redis-servers.js';

/**
 * Redis with Sentinel for tests: a master, `replicas` replicas and `sentinels` sentinels, each its own redis-server
 * process on `host` (TCP: sentinels cannot use unix sockets), started and stopped by the test.
 *
 * Each server may be placed on its own address and run through its own command prefix (network namespaces):
 * pass `placement` per role; by default all run on 127.0.0.1 on free ports.
 */
export interface SentinelOptions {
  /** Name sentinels know the master by (REDIS_SENTINEL_MASTER). */
  masterName?: string;
  replicas?: number;
  sentinels?: number;
  /** Sentinel `down-after-milliseconds` (how long the master must be silent before a failover starts). */
  downAfterMs?: number;
  failoverTimeoutMs?: number;
  /** Default host and command prefix for every server. */
  host?: string;
  prefix?: string[];
  /** Per-server placement, overriding host/prefix: master, replica i, sentinel i. */
  master?: ServerPlacement & { port?: number };
  replicaPlacement?: Array<ServerPlacement & { port?: number }>;
  sentinelPlacement?: Array<ServerPlacement & { port?: number }>;
  /** Extra redis-server arguments for master and replicas. */
  serverArgs?: string[];
}

export interface SentinelRedis {
  masterName: string;
  master: RedisNode;
  replicas: RedisNode[];
  sentinels: RedisNode[];
  /** The settings every component takes: REDIS_SENTINELS and REDIS_SENTINEL_MASTER. */
  env: Record<string, string>;
  /** Where the sentinels say the master is now. */
  currentMaster(): Promise<{ host: string; port: number }>;
  /** The data node (master or replica) at this address. */
  nodeAt(address: { host: string; port: number }): RedisNode | undefined;
  /** Resolve once the sentinels name a master other than `old` and it answers as a master; returns it. */
  waitForFailover(old: { host: string; port: number }, timeoutMs?: number): Promise<{ host: string; port: number }>;
  /** A client connected through the sentinels (as the apps connect). */
  client(): Redis;
  close(): Promise<void>;
}

export async function startSentinelRedis(opts: SentinelOptions = {}): Promise<SentinelRedis> {
  const masterName = opts.masterName ?? 'pe-master';
  const nReplicas = opts.replicas ?? 1;
  const nSentinels = opts.sentinels ?? 3;
  const host = opts.host ?? '127.0.0.1';
  const place = (p: (ServerPlacement & { port?: number }) | undefined): { host: string; prefix: string[]; port?: number } => ({
    host: p?.host ?? host,
    prefix: p?.prefix ?? opts.prefix ?? [],
    ...(p?.port ? { port: p.port } : {}),
  });
  const masterAt = place(opts.master);
  const replicaAt = Array.from({ length: nReplicas }, (_, i) => place(opts.replicaPlacement?.[i]));
  const sentinelAt = Array.from({ length: nSentinels }, (_, i) => place(opts.sentinelPlacement?.[i]));
  const all = [masterAt, ...replicaAt, ...sentinelAt];
  // Free ports are looked up here; servers inside other namespaces should be given explicit ports.
  const spare = await freePorts(all.filter((a) => !a.port).length, host);
  for (const a of all) if (!a.port) a.port = spare.shift()!;

  const dir = mkdtempSync(join(tmpdir(), 'pe-sentinel-'));
  const dataArgs = (name: string, at: { host: string; port?: number }): string[] => {
    const d = join(dir, name);
    mkdirSync(d, { recursive: true });
    return [
      '--port',
      String(at.port),
      '--bind',
      at.host,
      '--protected-mode',
      'no',
      '--dir',
      d,
      '--save',
      '',
      '--appendonly',
      'no',
      '--maxmemory-policy',
      'noeviction',
      '--loglevel',
      'warning',
      ...(opts.serverArgs ?? []),
    ];
  };
  const master = redisNode({
    host: masterAt.host,
    port: masterAt.port!,
    prefix: masterAt.prefix,
    label: 'redis master',
    args: dataArgs('master', masterAt),
  });
  const replicas = replicaAt.map((at, i) =>
    redisNode({
      host: at.host,
      port: at.port!,
      prefix: at.prefix,
      label: `redis replica ${i + 1}`,
      args: [...dataArgs(`replica${i + 1}`, at), '--replicaof', masterAt.host, String(masterAt.port)],
    }),
  );
  const sentinels = sentinelAt.map((at, i) => {
    const d = join(dir, `sentinel${i + 1}`);
    mkdirSync(d, { recursive: true });
    const conf = join(d, 'sentinel.conf');
    // Sentinel rewrites its config file as it learns the topology, so each has its own writable file.
    writeFileSync(
      conf,
      [
        `port ${at.port}`,
        `bind ${at.host}`,
        'protected-mode no',
        `dir ${d}`,
        `sentinel monitor ${masterName} ${masterAt.host} ${masterAt.port} ${Math.floor(nSentinels / 2) + 1}`,
        `sentinel down-after-milliseconds ${masterName} ${opts.downAfterMs ?? 1000}`,
        `sentinel failover-timeout ${masterName} ${opts.failoverTimeoutMs ?? 5000}`,
        `sentinel parallel-syncs ${masterName} 1`,
        '',
      ].join('\n'),
    );
    return redisNode({
      host: at.host,
      port: at.port!,
      prefix: at.prefix,
      label: `redis sentinel ${i + 1}`,
      args: [conf, '--sentinel', '--loglevel', 'warning'],
    });
  });

  const data = [master, ...replicas];
  const clients: Redis[] = [];
  const close = async (): Promise<void> => {
    for (const c of clients.splice(0)) c.disconnect();
    for (const n of [...sentinels, ...data]) {
      n.closeClients();
      await n.kill('SIGKILL');
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await master.start();
    for (const r of replicas) await r.start();
    for (const s of sentinels) await s.start();
    // Ready when the replicas are in sync and every sentinel sees the master and all of them.
    await pollUntil(
      'replicas to sync with the master',
      async () => {
        const info = await master.client().info('replication');
        return Number(/connected_slaves:(\d+)/.exec(info)?.[1] ?? 0) >= nReplicas && !/state=(?!online)/.test(info);
      },
      15_000,
    );
    await pollUntil(
      'sentinels to see the master, its replicas and each other',
      async () => {
        for (const s of sentinels) {
          const m = (await s.client().call('SENTINEL', 'MASTER', masterName)) as string[];
          const f = fields(m);
          if (Number(f['num-slaves']) < nReplicas || Number(f['num-other-sentinels']) < nSentinels - 1) return false;
        }
        return true;
      },
      20_000,
    );
  } catch (err) {
    await close();
    throw err;
  }

  const currentMaster = async (): Promise<{ host: string; port: number }> => {
    let last: unknown;
    for (const s of sentinels) {
      if (!s.running()) continue;
      try {
        const r = (await s.client().call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', masterName)) as [string, string];
        return { host: r[0], port: Number(r[1]) };
      } catch (err) {
        last = err;
      }
    }
    throw new Error(`no sentinel answered (${String(last)})`);
  };

  return {
    masterName,
    master,
    replicas,
    sentinels,
    env: { REDIS_SENTINELS: sentinels.map((s) => s.address).join(','), REDIS_SENTINEL_MASTER: masterName },
    currentMaster,
    nodeAt: (a) => data.find((n) => n.host === a.host && n.port === a.port),
    async waitForFailover(old, timeoutMs = 30_000) {
      return pollUntil(
        `sentinels to promote a new master (old ${old.host}:${old.port})`,
        async () => {
          const now = await currentMaster();
          if (now.host === old.host && now.port === old.port) return undefined;
          const node = data.find((n) => n.host === now.host && n.port === now.port);
          const role = node ? ((await node.client().call('ROLE')) as unknown[])[0] : undefined;
          return role === 'master' ? now : undefined;
        },
        timeoutMs,
      );
    },
    client() {
      const r = new Redis({ sentinels: sentinels.map((s) => ({ host: s.host, port: s.port })), name: masterName, maxRetriesPerRequest: 1 });
      r.on('error', () => undefined);
      clients.push(r);
      return r;
    },
    close,
  };
}

function fields(flat: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[flat[i]!] = flat[i + 1]!;
  return out;
}

async function pollUntil<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${String(last)})` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
