import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { Redis } from 'ioredis';

/**
 * Shared pieces of the Sentinel and Cluster helpers: one redis-server process on a TCP address that a test can kill
 * (SIGKILL for a crash) and start again on the same address and data dir.
 *
 * `prefix` runs the server through another program, e.g. `['ip', 'netns', 'exec', 'ns1']`, so the same helpers start
 * servers inside a network namespace; `ip netns exec` execs the command, so the pid we hold is the server's own.
 */
export interface ServerPlacement {
  /** Address the servers bind to and announce (default 127.0.0.1). */
  host?: string;
  /** Command prefix, e.g. ['ip', 'netns', 'exec', 'ns1']. */
  prefix?: string[];
}

export interface RedisNode {
  host: string;
  port: number;
  /** `host:port`, as in REDIS_SENTINELS / REDIS_CLUSTER_NODES. */
  address: string;
  readonly pid: number | undefined;
  running(): boolean;
  /** Start (or restart) the process with the same arguments; resolves once it answers PING. */
  start(): Promise<void>;
  /** Send a signal and wait for the exit (SIGKILL models a crash: no shutdown save, no goodbye to clients). */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** A client for checks (closed by the helper's close()). */
  client(): Redis;
}

/** A free TCP port on `host` (only meaningful in this network namespace; pass ports explicitly for others). */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export async function freePorts(n: number, host = '127.0.0.1'): Promise<number[]> {
  const out = new Set<number>();
  for (let i = 0; out.size < n && i < n * 20; i++) out.add(await freePort(host));
  if (out.size < n) throw new Error(`could not find ${n} free ports on ${host}`);
  return [...out];
}

/** Poll PING on host:port until it answers or the deadline passes. */
export async function waitForPing(host: string, port: number, timeoutMs = 10_000, what = `redis-server on ${host}:${port}`): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = new Redis({
      host,
      port,
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
      connectTimeout: 500,
      enableOfflineQueue: false,
    });
    r.on('error', () => undefined);
    try {
      await r.connect();
      await r.ping();
      r.disconnect();
      return;
    } catch {
      r.disconnect();
    }
    if (Date.now() > deadline) throw new Error(`${what} did not answer PING within ${timeoutMs} ms`);
    await new Promise((res) => setTimeout(res, 30));
  }
}

export function redisNode(opts: {
  host: string;
  port: number;
  args: string[];
  prefix?: string[];
  binary?: string;
  label: string;
}): RedisNode & { closeClients(): void } {
  let child: ChildProcess | undefined;
  let stderr = '';
  const clients: Redis[] = [];
  const node = {
    host: opts.host,
    port: opts.port,
    address: `${opts.host}:${opts.port}`,
    get pid() {
      return child?.pid;
    },
    running: () => !!child && child.exitCode === null && child.signalCode === null,
    async start() {
      if (node.running()) return;
      const cmd = [...(opts.prefix ?? []), opts.binary ?? 'redis-server', ...opts.args];
      stderr = '';
      const proc = spawn(cmd[0]!, cmd.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
      proc.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
      child = proc;
      const failed = new Promise<never>((_, reject) => {
        proc.once('error', (e) =>
          reject(new Error(`cannot start ${cmd[0]} for ${opts.label} (${e.message}); install redis: apt-get install -y redis-server`)),
        );
        proc.once('exit', (code, sig) => reject(new Error(`${opts.label} exited at start (${code ?? sig}): ${stderr}`)));
      });
      failed.catch(() => undefined);
      await Promise.race([waitForPing(opts.host, opts.port, 10_000, opts.label), failed]);
    },
    async kill(signal: NodeJS.Signals = 'SIGTERM') {
      const proc = child;
      if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
      await new Promise<void>((resolve) => {
        proc.once('exit', () => resolve());
        proc.kill(signal);
      });
    },
    client() {
      const r = new Redis({ host: opts.host, port: opts.port, maxRetriesPerRequest: 1, retryStrategy: () => null });
      r.on('error', () => undefined);
      clients.push(r);
      return r;
    },
    closeClients() {
      for (const c of clients.splice(0)) c.disconnect();
    },
  };
  return node;
}
