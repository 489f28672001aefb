import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO, until } from './stack.js';
import { startTestRedis, type TestRedis } from './redis.js';

/**
 * Fault injection helpers: a private redis-server with AOF (so a SIGKILL or a stop loses nothing acknowledged but the
 * last second), and the gateway as a real child process (so it can be SIGKILLed mid-upload).
 */
/** A private redis-server with AOF that a test can SIGKILL and start again on the same socket and data. */
export type FaultRedis = TestRedis;

export function startAofRedis(): Promise<FaultRedis> {
  return startTestRedis({ aof: true });
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
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const url = `http://127.0.0.1:${port}`;
  await until(
    `gateway on ${url} to be ready`,
    async () => {
      if (proc.exitCode !== null) throw new Error(`gateway exited ${proc.exitCode}: ${output.slice(-10).join('\n')}`);
      const r = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(2000) });
      await r.body?.cancel();
      return r.status === 200;
    },
    60_000,
    100,
  );
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
