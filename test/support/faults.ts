import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { REPO, until } from './stack.js';

/**
 * Fault injection helpers: a private redis-server with AOF (so a SIGKILL or a stop loses nothing acknowledged but the
 * last second), and the gateway as a real child process (so it can be SIGKILLed mid-upload).
 */
export interface FaultRedis {
  url: string;
  dir: string;
  pid(): number | undefined;
  /** Stop it: SIGTERM (clean, AOF flushed) or SIGKILL (crash), and wait for the exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** Start it again on the same socket and data dir; resolves once it answers PING. */
  start(): Promise<void>;
  client(): Redis;
  close(): Promise<void>;
}

export async function startAofRedis(): Promise<FaultRedis> {
  const dir = mkdtempSync(join(tmpdir(), 'pe-aof-redis-'));
  const socket = join(dir, 'redis.sock');
  let child: ChildProcess | undefined;
  const clients: Redis[] = [];
  const ping = async (): Promise<boolean> => {
    const r = new Redis({ path: socket, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    r.on('error', () => undefined);
    try {
      await r.connect();
      // Loading the AOF answers LOADING: not up yet.
      return (await r.ping()) === 'PONG';
    } catch {
      return false;
    } finally {
      r.disconnect();
    }
  };
  const start = async (): Promise<void> => {
    const args = ['--port', '0', '--unixsocket', socket, '--unixsocketperm', '700', '--dir', dir, '--save', '', '--appendonly', 'yes',
      '--appendfsync', 'everysec', '--maxmemory-policy', 'noeviction', '--loglevel', 'warning'];
    const proc = spawn('redis-server', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    child = proc;
    proc.once('error', () => undefined);
    await until('redis-server to answer PING', () => (proc.exitCode === null ? ping() : Promise.reject(new Error(`redis-server exited ${proc.exitCode}`))), 15_000, 20);
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

export interface GatewayProcess {
  proc: ChildProcess;
  url: string;
  output: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/** The real gateway app as a child process on `port`, ready once /readyz answers 200. */
export async function startGatewayProcess(env: Record<string, string>, port: number): Promise<GatewayProcess> {
  const proc = spawn(process.execPath, ['--import', 'tsx', join(REPO, 'apps/gateway/src/main.ts')], {
    cwd: REPO,
    env: { ...process.env, LOG_LEVEL: 'warn', HOST: '127.0.0.1', PORT: String(port), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  for (const s of [proc.stdout!, proc.stderr!]) s.on('data', (d: Buffer) => output.push(...d.toString().split('\n').filter(Boolean)));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  const url = `http://127.0.0.1:${port}`;
  await until(`gateway on ${url} to be ready`, async () => {
    if (proc.exitCode !== null) throw new Error(`gateway exited ${proc.exitCode}: ${output.slice(-10).join('\n')}`);
    const r = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(2000) });
    await r.body?.cancel();
    return r.status === 200;
  }, 60_000, 100);
  return {
    proc,
    url,
    output,
    exited,
    async kill(signal: NodeJS.Signals = 'SIGKILL') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      await exited;
    },
  };
}

/** Running (a zombie counts as dead: it only waits to be reaped). */
export function running(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) [ZX]/s.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}
