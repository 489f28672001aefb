import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { build, type Gateway } from '../../apps/gateway/src/app.js';
import { loadGatewayConfig, type GatewayConfig } from '../../apps/gateway/src/config.js';
import { until } from './poll.js';
import { startTestRedis, type TestRedis } from './redis.js';
import { startTestS3, type TestS3 } from './s3.js';

export const REPO = fileURLToPath(new URL('../../', import.meta.url));

export interface RunningGateway extends Gateway {
  url: string;
  storageDir: string;
  close(): Promise<void>;
}

/**
 * How the apps reach Redis in a test, as the environment settings they read: `{ REDIS_URL }`, `{ REDIS_SENTINELS,
 * REDIS_SENTINEL_MASTER }` or `{ REDIS_CLUSTER_NODES }` (the Sentinel and Cluster helpers' `env`).
 */
export interface RedisConnectionSpec {
  env: Record<string, string>;
}

/** The real gateway, in this process, listening on a free loopback port (tests talk to it over real HTTP). */
export async function startGateway(
  redis: string | RedisConnectionSpec,
  overrides: Partial<GatewayConfig> = {},
  storageDir?: string,
): Promise<RunningGateway> {
  const dir = storageDir ?? mkdtempSync(join(tmpdir(), 'pe-storage-'));
  // acceptWithoutWorker: suites queue jobs for engines no worker runs yet (or ever); test/no-worker.test.ts sets it false.
  const env = typeof redis === 'string' ? { REDIS_URL: redis } : redis.env;
  const config = loadGatewayConfig({
    env,
    overrides: { storageDir: dir, port: 0, logLevel: 'warn', acceptWithoutWorker: true, ...overrides },
  });
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
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
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
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.once('exit', (code, signal) => resolve({ code, signal })),
  );
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
        reject(
          new Error(`worker log did not show the expected record within ${timeoutMs} ms; last lines:\n${output.slice(-20).join('\n')}`),
        );
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

export { until } from './poll.js';

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** Submit a job over HTTP. */
export async function submit(
  url: string,
  file: Buffer,
  fields: Record<string, string> = {},
  name = 'photo.jpg',
  type = 'image/jpeg',
): Promise<Response> {
  const form = new FormData();
  for (const [k, v] of Object.entries(fields)) form.append(k, v);
  form.append('image', new Blob([file], { type }), name);
  return fetch(`${url}/v1/jobs`, { method: 'POST', body: form });
}

export async function waitForStatus(url: string, id: string, statuses: string[], timeoutMs = 60_000): Promise<Record<string, unknown>> {
  return until(
    `job ${id} to reach ${statuses.join('|')}`,
    async () => {
      const r = await fetch(`${url}/v1/jobs/${id}`);
      const body = (await r.json()) as Record<string, unknown>;
      return statuses.includes(body.status as string) ? body : undefined;
    },
    timeoutMs,
    100,
  );
}

export const FIXTURE_ENGINE = join(REPO, 'test/fixtures/engines/fixture-engine.mjs');

/** A worker engine profile running the fixture engine (test/fixtures/engines/fixture-engine.mjs). */
export function fixtureEngine(
  name: string,
  mode: 'resize' | 'sleep' | 'noop' | 'crash',
  delayMs = 0,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return { name, command: [process.execPath, FIXTURE_ENGINE, '--mode', mode, '--delay-ms', String(delayMs)], ...extra };
}

export interface Stack {
  redis: TestRedis;
  /** The Redis settings both apps were given. */
  redisEnv: Record<string, string>;
  gw: RunningGateway;
  worker: RunningWorker;
  /** Set with `storage: 's3'`: the private s3rver both the gateway and the worker store into. */
  s3?: TestS3;
  close(): Promise<void>;
}

export interface StackOptions {
  gateway?: Partial<GatewayConfig>;
  engines: unknown[];
  workerEnv?: Record<string, string>;
  /** Connect to this Redis (Sentinel, Cluster, …: anything with the apps' env settings) instead of a private one; the caller stops it. */
  redis?: RedisConnectionSpec;
  /** `s3`: a private s3rver process; gateway and worker share nothing but Redis and the bucket. Default: a folder. */
  storage?: 'local' | 's3';
}

/**
 * The whole system for one test file: a private Redis (or the one in `opts.redis`), the gateway in this process, and
 * the worker app as a child process running `engines` (profiles as in a WORKER_CONFIG file), ready to take jobs.
 */
export async function startStack(opts: StackOptions & { redis: RedisConnectionSpec }): Promise<Omit<Stack, 'redis'>>;
export async function startStack(opts: StackOptions): Promise<Stack>;
export async function startStack(opts: StackOptions): Promise<Stack | Omit<Stack, 'redis'>> {
  const own = opts.redis ? undefined : await startTestRedis();
  const redisEnv = opts.redis?.env ?? { REDIS_URL: own!.url };
  // Object storage: a private s3rver process; gateway and worker share nothing but Redis and the bucket.
  const s3 = opts.storage === 's3' ? await startTestS3() : undefined;
  const gw = await startGateway({ env: redisEnv }, { ...(s3 ? s3.settings('jobs') : {}), ...opts.gateway });
  const cfgDir = mkdtempSync(join(tmpdir(), 'pe-wcfg-'));
  const cfg = join(cfgDir, 'worker.json');
  writeFileSync(cfg, JSON.stringify({ engines: opts.engines }));
  const storageEnv = s3 ? s3.env('jobs') : { STORAGE_DIR: gw.storageDir };
  const worker = await startWorker({ ...redisEnv, ...storageEnv, WORKER_CONFIG: cfg, ...opts.workerEnv });
  await worker.waitForLog((r) => r.msg === 'worker ready');
  return {
    ...(own ? { redis: own } : {}),
    redisEnv,
    gw,
    worker,
    ...(s3 ? { s3 } : {}),
    async close() {
      await worker.stop();
      await gw.close();
      await own?.close();
      await s3?.close();
      rmSync(cfgDir, { recursive: true, force: true });
    },
  };
}
