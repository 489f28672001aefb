import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Redis, type RedisOptions } from 'ioredis';
import { redisOptions } from '@photoenhance/queue';
import { REDIS_INSTALL_HINT } from '../doctor/checks.js';
import { CliError, EXIT } from '../exit.js';
import { describeExit, startChild, type ManagedChild } from './children.js';
import { freePort } from './ports.js';

/** sun_path holds 108 bytes on Linux, 104 on macOS: stay well under. */
const MAX_SOCKET_PATH = 100;

export interface PrivateRedis {
  child: ManagedChild;
  /** What the gateway and worker get as REDIS_URL: the socket path, or redis://127.0.0.1:<port>. */
  url: string;
}

/**
 * Start a private redis-server under `<varDir>/redis`: AOF on (fsync every second), no RDB snapshots, noeviction
 * (BullMQ needs it); a unix socket when the path is short enough, else a free loopback port. Resolves once it answers PING.
 */
export async function startPrivateRedis(
  varDir: string,
  opts: {
    env: NodeJS.ProcessEnv;
    signal: AbortSignal;
    onSpawn: (child: ManagedChild) => void;
    deadlineMs?: number /** Reuse this TCP port (a restart keeps the address). */;
    port?: number;
  },
): Promise<PrivateRedis> {
  const dir = join(varDir, 'redis');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const socket = join(dir, 'redis.sock');
  let listen: string[];
  let url: string;
  if (Buffer.byteLength(socket) < MAX_SOCKET_PATH) {
    listen = ['--port', '0', '--unixsocket', socket, '--unixsocketperm', '700'];
    url = socket;
  } else {
    const port = opts.port ?? (await freePort());
    listen = ['--bind', '127.0.0.1', '--port', String(port)];
    url = `redis://127.0.0.1:${port}`;
  }
  const args = [
    '--dir',
    dir,
    '--appendonly',
    'yes',
    '--appendfsync',
    'everysec',
    '--maxmemory-policy',
    'noeviction',
    '--save',
    '',
    ...listen,
    '--loglevel',
    'warning',
  ];
  let child: ManagedChild;
  try {
    child = await startChild('redis', 'redis-server', args, { env: opts.env, prefix: 'redis    | ' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new CliError(EXIT.UNREACHABLE, `error: redis-server is not installed (not found on PATH).\nhint: ${REDIS_INSTALL_HINT}`);
    }
    throw new CliError(EXIT.UNREACHABLE, `error: cannot start redis-server: ${(err as Error).message}`);
  }
  opts.onSpawn(child);
  const exitedEarly = child.exited.then((info) => {
    throw new CliError(
      EXIT.UNREACHABLE,
      `error: ${describeExit('redis-server', info)} before answering PING; see its messages above (data dir ${dir}).`,
    );
  });
  exitedEarly.catch(() => undefined);
  await Promise.race([waitForPing(redisOptions(url), opts.deadlineMs ?? 15_000, `redis-server at ${url}`, opts.signal), exitedEarly]);
  return { child, url };
}

/** Poll PING until it answers or the deadline passes. */
export async function waitForPing(options: RedisOptions, deadlineMs: number, what: string, signal?: AbortSignal): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  let lastError = '';
  for (let delay = 10; ; delay = Math.min(250, delay * 2)) {
    signal?.throwIfAborted();
    const client = new Redis({ ...options, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 2000 });
    client.on('error', () => undefined);
    try {
      await client.connect();
      await client.ping();
      return;
    } catch (err) {
      lastError = (err as Error).message;
    } finally {
      client.disconnect();
    }
    if (Date.now() + delay > deadline) {
      throw new CliError(EXIT.UNREACHABLE, `error: ${what} did not answer PING within ${Math.round(deadlineMs / 1000)} s (${lastError})`);
    }
    await new Promise((r) => setTimeout(r, delay));
  }
}
