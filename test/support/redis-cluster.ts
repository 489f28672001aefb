import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cluster } from 'ioredis';
import { freePorts, redisNode, type RedisNode, type ServerPlacement } from './redis-servers.js';

/**
 * Redis Cluster for tests: `masters` × (1 + `replicasPerMaster`) `redis-server --cluster-enabled yes` processes, joined
 * with `redis-cli --cluster create … --cluster-yes`, started and stopped by the test.
 * Placement (host, command prefix, port) works as in redis-sentinel.ts, per node in `nodes` order.
 */
export interface ClusterOptions {
  masters?: number;
  replicasPerMaster?: number;
  host?: string;
  prefix?: string[];
  nodePlacement?: Array<ServerPlacement & { port?: number }>;
  /** cluster-node-timeout (how long before a silent master is failed over, when it has replicas). */
  nodeTimeoutMs?: number;
}

export interface ClusterRedis {
  nodes: RedisNode[];
  /** The setting every component takes: REDIS_CLUSTER_NODES. */
  env: Record<string, string>;
  client(): Cluster;
  close(): Promise<void>;
}

export async function startClusterRedis(opts: ClusterOptions = {}): Promise<ClusterRedis> {
  const masters = opts.masters ?? 3;
  const per = opts.replicasPerMaster ?? 0;
  const count = masters * (1 + per);
  const host = opts.host ?? '127.0.0.1';
  const at = Array.from({ length: count }, (_, i) => ({
    host: opts.nodePlacement?.[i]?.host ?? host,
    prefix: opts.nodePlacement?.[i]?.prefix ?? opts.prefix ?? [],
    port: opts.nodePlacement?.[i]?.port,
  }));
  const spare = await freePorts(at.filter((a) => !a.port).length, host);
  for (const a of at) a.port ??= spare.shift()!;
  const dir = mkdtempSync(join(tmpdir(), 'pe-cluster-'));
  const nodes = at.map((a, i) => {
    const d = join(dir, `node${i + 1}`);
    mkdirSync(d, { recursive: true });
    return redisNode({
      host: a.host,
      port: a.port!,
      prefix: a.prefix,
      label: `redis cluster node ${i + 1}`,
      args: [
        '--port',
        String(a.port),
        '--bind',
        a.host,
        '--protected-mode',
        'no',
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        join(d, 'nodes.conf'),
        '--cluster-node-timeout',
        String(opts.nodeTimeoutMs ?? 2000),
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
      ],
    });
  });
  const clients: Cluster[] = [];
  const close = async (): Promise<void> => {
    await Promise.all(clients.splice(0).map((c) => c.quit().catch(() => c.disconnect())));
    for (const n of nodes) {
      n.closeClients();
      await n.kill('SIGKILL');
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (const n of nodes) await n.start();
    const prefix = at[0]!.prefix;
    await run(
      [...prefix, 'redis-cli', '--cluster', 'create', ...nodes.map((n) => n.address), '--cluster-replicas', String(per), '--cluster-yes'],
      30_000,
    );
    // `create` returns once slots are assigned; every node must agree before clients see a stable map.
    const deadline = Date.now() + 20_000;
    for (;;) {
      const states = await Promise.all(
        nodes.map(async (n) => {
          const c = n.client();
          try {
            return /cluster_state:ok/.test((await c.call('CLUSTER', 'INFO')) as string);
          } catch {
            return false;
          } finally {
            c.disconnect();
          }
        }),
      );
      // Replicas (if any) must also have finished their first sync, or WAIT and failover see nothing to count on.
      const synced =
        per === 0 ||
        (
          await Promise.all(
            nodes.map(async (n) => {
              const c = n.client();
              try {
                const info = String(await c.info('replication'));
                return /role:master/.test(info) || /master_link_status:up/.test(info);
              } catch {
                return false;
              } finally {
                c.disconnect();
              }
            }),
          )
        ).every(Boolean);
      if (states.every(Boolean) && synced) break;
      if (Date.now() > deadline) throw new Error('redis cluster did not reach cluster_state:ok within 20 s');
      await new Promise((r) => setTimeout(r, 100));
    }
  } catch (err) {
    await close();
    throw err;
  }
  return {
    nodes,
    env: {
      REDIS_CLUSTER_NODES: nodes
        .slice(0, masters)
        .map((n) => n.address)
        .join(','),
    },
    client() {
      const c = new Cluster(
        nodes.map((n) => ({ host: n.host, port: n.port })),
        { redisOptions: { maxRetriesPerRequest: 1 } },
      );
      c.on('error', () => undefined);
      clients.push(c);
      return c;
    },
    close,
  };
}

async function run(cmd: string[], timeoutMs: number): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const p = spawn(cmd[0]!, cmd.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-4000)));
    p.stderr!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-4000)));
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.once('error', (e) => {
      clearTimeout(t);
      reject(new Error(`cannot run ${cmd.join(' ')}: ${e.message}`));
    });
    p.once('exit', (code) => {
      clearTimeout(t);
      if (code === 0) resolve();
      else reject(new Error(`${cmd.join(' ')} exited ${code}:\n${out}`));
    });
  });
}
