import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { build, type Gateway } from '../../apps/gateway/src/app.js';
import { loadGatewayConfig, type GatewayConfig } from '../../apps/gateway/src/config.js';
import { startTestRedis, type TestRedis } from './redis.js';

export const REPO = fileURLToPath(new URL('../../', import.meta.url));

export interface RunningGateway extends Gateway {
  url: string;
  storageDir: string;
  close(): Promise<void>;
}

/** The real gateway, in this process, listening on a free loopback port (tests talk to it over real HTTP). */
export async function startGateway(redisUrl: string, overrides: Partial<GatewayConfig> = {}, storageDir?: string): Promise<RunningGateway> {
  const dir = storageDir ?? mkdtempSync(join(tmpdir(), 'pe-storage-'));
  // acceptWithoutWorker: suites queue jobs for engines no worker runs yet (or ever); test/no-worker.test.ts sets it false.
  const config = loadGatewayConfig({ env: {}, overrides: { redisUrl, storageDir: dir, port: 0, logLevel: 'warn', acceptWithoutWorker: true, ...overrides } });
  const gw = await build({ config, logger: pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }) });
  const address = await gw.app.listen({ host: '127.0.0.1', port: 0 });
  return {
    ...gw,
    url: address,
    storageDir: dir,
    async close() {
      await gw.app.close();
    },
  };
}

export interface RunningWorker {
  proc: ChildProcess;
  pid: number;
  output: string[];
  /** Resolves with the first log record matching. */
  waitForLog(match: (rec: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** The real worker app as a child process (`node --import tsx apps/worker/src/main.ts`). */
export async function startWorker(env: Record<string, string>): Promise<RunningWorker> {
  const proc = spawn(process.execPath, ['--import', 'tsx', join(REPO, 'apps/worker/src/main.ts')], {
    cwd: REPO,
    env: { ...process.env, LOG_LEVEL: 'info', ENFORCEMENT: 'watchdog', HEARTBEAT_MS: '300', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const records: Array<Record<string, unknown>> = [];
  const waiters = new Set<() => void>();
  let buf = '';
  const onData = (chunk: Buffer): void => {
    buf += chunk.toString();
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      output.push(line);
      try {
        records.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // not JSON (stderr text)
      }
      for (const w of waiters) w();
    }
  };
  proc.stdout!.on('data', onData);
  proc.stderr!.on('data', onData);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  const waitForLog = (match: (rec: Record<string, unknown>) => boolean, timeoutMs = 60_000): Promise<Record<string, unknown>> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const hit = records.find(match);
        if (hit) {
          waiters.delete(check);
          clearTimeout(t);
          resolve(hit);
        }
      };
      const t = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`worker log did not show the expected record within ${timeoutMs} ms; last lines:\n${output.slice(-20).join('\n')}`));
      }, timeoutMs);
      waiters.add(check);
      void exited.then(() => {
        if (waiters.has(check)) {
          waiters.delete(check);
          clearTimeout(t);
          reject(new Error(`worker exited; last lines:\n${output.slice(-30).join('\n')}`));
        }
      });
      check();
    });
  return {
    proc,
    pid: proc.pid!,
    output,
    waitForLog,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
  };
}

/** Poll `fn` until it returns a truthy value, or fail with `what` after the deadline. */
export async function until<T>(what: string, fn: () => Promise<T | undefined | false | null> | T | undefined | false | null, timeoutMs = 30_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** Submit a job over HTTP. */
export async function submit(url: string, file: Buffer, fields: Record<string, string> = {}, name = 'photo.jpg', type = 'image/jpeg'): Promise<Response> {
  const form = new FormData();
  for (const [k, v] of Object.entries(fields)) form.append(k, v);
  form.append('image', new Blob([file], { type }), name);
  return fetch(`${url}/v1/jobs`, { method: 'POST', body: form });
}

export async function waitForStatus(url: string, id: string, statuses: string[], timeoutMs = 60_000): Promise<Record<string, unknown>> {
  return until(`job ${id} to reach ${statuses.join('|')}`, async () => {
    const r = await fetch(`${url}/v1/jobs/${id}`);
    const body = (await r.json()) as Record<string, unknown>;
    return statuses.includes(body.status as string) ? body : undefined;
  }, timeoutMs, 100);
}

export const FIXTURE_ENGINE = join(REPO, 'test/fixtures/engines/fixture-engine.mjs');

/** A worker engine profile running the fixture engine (test/fixtures/engines/fixture-engine.mjs). */
export function fixtureEngine(name: string, mode: 'resize' | 'sleep' | 'noop' | 'crash', delayMs = 0, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { name, command: [process.execPath, FIXTURE_ENGINE, '--mode', mode, '--delay-ms', String(delayMs)], ...extra };
}

export interface Stack {
  redis: TestRedis;
  gw: RunningGateway;
  worker: RunningWorker;
  close(): Promise<void>;
}

/**
 * The whole system for one test file: a private Redis, the gateway in this process, and the worker app as a child
 * process running `engines` (profiles as in a WORKER_CONFIG file), ready to take jobs.
 */
export async function startStack(opts: { gateway?: Partial<GatewayConfig>; engines: unknown[]; workerEnv?: Record<string, string> }): Promise<Stack> {
  const redis = await startTestRedis();
  const gw = await startGateway(redis.url, opts.gateway ?? {});
  const cfgDir = mkdtempSync(join(tmpdir(), 'pe-wcfg-'));
  const cfg = join(cfgDir, 'worker.json');
  writeFileSync(cfg, JSON.stringify({ engines: opts.engines }));
  const worker = await startWorker({ REDIS_URL: redis.url, STORAGE_DIR: gw.storageDir, WORKER_CONFIG: cfg, ...opts.workerEnv });
  await worker.waitForLog((r) => r.msg === 'worker ready');
  return {
    redis,
    gw,
    worker,
    async close() {
      await worker.stop();
      await gw.close();
      await redis.close();
      rmSync(cfgDir, { recursive: true, force: true });
    },
  };
}
