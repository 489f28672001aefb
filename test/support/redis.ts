import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';

/**
 * A private redis-server for one test file: its own unix socket and data dir, so tests are hermetic and can
 * stop and restart it to inject faults. Never the machine's shared Redis.
 */
export interface TestRedis {
  url: string;
  socket: string;
  dir: string;
  /** Stop it: SIGTERM (clean; with AOF, flushed) or SIGKILL (a crash), and wait for the exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** The server's pid while it runs. */
  pid(): number | undefined;
  /** Start it again on the same socket. */
  start(): Promise<void>;
  /** Stop it and remove its files. */
  close(): Promise<void>;
  client(): Redis;
}

/**
 * `aof`: append-only with fsync every second, so a SIGKILL loses nothing acknowledged but the last second (fault tests
 * restart it on the same socket and data).
 */
export async function startTestRedis(opts: { policy?: string; aof?: boolean } = {}): Promise<TestRedis> {
  const dir = mkdtempSync(join(tmpdir(), 'pe-redis-'));
  const socket = join(dir, 'redis.sock');
  let child: ChildProcess | undefined;
  const clients: Redis[] = [];

  const start = async (): Promise<void> => {
    const args = [
      '--port',
      '0',
      '--unixsocket',
      socket,
      '--unixsocketperm',
      '700',
      '--dir',
      dir,
      '--save',
      '',
      ...(opts.aof ? ['--appendonly', 'yes', '--appendfsync', 'everysec'] : ['--appendonly', 'no']),
      '--maxmemory-policy',
      opts.policy ?? 'noeviction',
      '--loglevel',
      'warning',
    ];
    const proc = spawn('redis-server', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    child = proc;
    await new Promise<void>((resolve, reject) => {
      proc.once('error', (e) => reject(new Error(`cannot start redis-server (${e.message}); install it: apt-get install -y redis-server`)));
      const deadline = Date.now() + 10_000;
      const probe = (): void => {
        const r = new Redis({ path: socket, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
        r.on('error', () => undefined);
        r.connect()
          .then(() => r.ping())
          .then(() => {
            r.disconnect();
            resolve();
          })
          .catch(() => {
            r.disconnect();
            if (Date.now() > deadline) reject(new Error('redis-server did not come up within 10 s'));
            else setTimeout(probe, 20);
          });
      };
      probe();
    });
  };

  const stop = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<void> => {
    const proc = child;
    child = undefined;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      proc.once('exit', () => resolve());
      proc.kill(signal);
    });
  };

  await start();
  return {
    url: socket,
    socket,
    dir,
    pid: () => child?.pid,
    stop,
    start,
    client() {
      const r = new Redis({ path: socket, maxRetriesPerRequest: null });
      r.on('error', () => undefined);
      clients.push(r);
      return r;
    },
    async close() {
      for (const c of clients) c.disconnect();
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
