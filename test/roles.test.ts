import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, REPO, cleanEnv, freePort, runCli } from '../apps/cli/test/launch.js';
import { startTestRedis, type TestRedis } from './support/redis.js';
import { smallPhoto } from './support/images.js';
import { fixtureEngine, submit, until, waitForStatus } from './support/stack.js';

/**
 * `photoenhance gateway` and `photoenhance worker`: the real commands as child processes against a private redis-server,
 * configured only by environment, each role alone (the worker starts before any gateway exists).
 */

interface RoleProc {
  proc: ChildProcess;
  output(): string;
  waitFor(re: RegExp, timeoutMs: number): Promise<void>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Stop with `signal` and resolve with the exit; SIGKILL after 40 s so a hung role fails the test instead of hanging it. */
  stop(signal: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function startRole(role: 'gateway' | 'worker', env: NodeJS.ProcessEnv): RoleProc {
  const proc = spawn(process.execPath, [BIN, role], { env, cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const waiters = new Set<() => void>();
  const onData = (d: Buffer): void => {
    out += d.toString();
    for (const w of waiters) w();
  };
  proc.stdout!.on('data', onData);
  proc.stderr!.on('data', onData);
  let done = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.once('exit', (code, signal) => {
      done = true;
      resolve({ code, signal });
      for (const w of waiters) w();
    }),
  );
  return {
    proc,
    output: () => out,
    exited,
    waitFor: (re, timeoutMs) =>
      new Promise((resolve, reject) => {
        const check = (): void => {
          if (re.test(out)) finish(undefined);
          else if (done) finish(new Error(`photoenhance ${role} exited before printing ${re}:\n${out}`));
        };
        const timer = setTimeout(
          () => finish(new Error(`photoenhance ${role} did not print ${re} within ${timeoutMs} ms:\n${out}`)),
          timeoutMs,
        );
        const finish = (err: Error | undefined): void => {
          clearTimeout(timer);
          waiters.delete(check);
          if (err) reject(err);
          else resolve();
        };
        waiters.add(check);
        check();
      }),
    async stop(signal) {
      if (!done) proc.kill(signal);
      const t = setTimeout(() => proc.kill('SIGKILL'), 40_000);
      const info = await exited;
      clearTimeout(t);
      return info;
    },
  };
}

describe('photoenhance gateway / photoenhance worker (one role per host)', () => {
  let redis: TestRedis;
  let dir: string;
  let storage: string;
  let workerCfg: string;
  let worker: RoleProc;
  let gateway: RoleProc;
  let url: string;

  beforeAll(async () => {
    redis = await startTestRedis();
    dir = mkdtempSync(join(tmpdir(), 'pe-roles-'));
    storage = join(dir, 'storage');
    workerCfg = join(dir, 'worker.json');
    writeFileSync(workerCfg, JSON.stringify({ engines: [fixtureEngine('classic', 'resize', 0)] }));
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    // The worker first, with no gateway anywhere: a worker host needs none.
    worker = startRole(
      'worker',
      cleanEnv({
        REDIS_URL: redis.url,
        STORAGE_DIR: storage,
        WORKER_CONFIG: workerCfg,
        HOST_ID: 'role-test-worker',
        ENFORCEMENT: 'watchdog',
        HEARTBEAT_MS: '300',
        LOG_LEVEL: 'info',
      }),
    );
    await worker.waitFor(/"msg":"worker ready"/, 90_000);
    gateway = startRole(
      'gateway',
      cleanEnv({ REDIS_URL: redis.url, STORAGE_DIR: storage, HOST: '127.0.0.1', PORT: String(port), LOG_LEVEL: 'info' }),
    );
    await gateway.waitFor(/gateway listening on/, 90_000);
  }, 200_000);

  afterAll(async () => {
    await Promise.all([worker?.stop('SIGKILL'), gateway?.stop('SIGKILL')]);
    await redis?.close();
    rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it('the gateway role lists the worker role (its HOST_ID) as a live host', async () => {
    const hosts = await until(
      'the worker to publish its host state',
      async () => {
        const body = (await (await fetch(`${url}/v1/system`)).json()) as { hosts: Array<{ hostId: string }> };
        return body.hosts.length ? body.hosts : undefined;
      },
      30_000,
      200,
    );
    expect(hosts.map((h) => h.hostId)).toEqual(['role-test-worker']);
    expect((await fetch(`${url}/readyz`)).status).toBe(200);
  });

  it('a job submitted to the gateway role completes on the worker role', async () => {
    const photo = await smallPhoto('jpeg', 200);
    const res = await submit(url, photo, { scale: '2', format: 'png' });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    const view = await waitForStatus(url, id, ['completed', 'failed'], 60_000);
    expect(view.status, JSON.stringify(view)).toBe('completed');
    const result = await fetch(`${url}/v1/jobs/${id}/result`);
    expect(result.status).toBe(200);
    const meta = await sharp(Buffer.from(await result.arrayBuffer())).metadata();
    expect(meta.format).toBe('png');
    expect(meta.width).toBe(400);
    expect(worker.output()).toContain(`"jobId":"${id}"`);
    expect(worker.output()).toMatch(new RegExp(`"jobId":"${id}"[^\\n]*"msg":"job completed"`));
  }, 90_000);

  it('SIGTERM stops the gateway role cleanly (exit 0), SIGINT the worker role (exit 0, engines stopped)', async () => {
    const g = await gateway.stop('SIGTERM');
    expect(g).toEqual({ code: 0, signal: null });
    expect(gateway.output()).toMatch(/"msg":"gateway stopping"/);
    const w = await worker.stop('SIGINT');
    expect(w).toEqual({ code: 0, signal: null });
    expect(worker.output()).toMatch(/"msg":"worker stopped"/);
    // The uploads and results went to the STORAGE_DIR given in the environment.
    expect(readdirSync(storage).length).toBeGreaterThan(0);
  }, 90_000);
});

describe('role commands refuse bad configuration with exit 78 and the setting named', () => {
  it('worker without REDIS_URL', async () => {
    const r = await runCli(['worker'], { env: cleanEnv({ LOG_LEVEL: 'warn' }), timeoutMs: 60_000 });
    expect(r.code).toBe(78);
    expect(r.stderr).toMatch(/setting REDIS_URL \(environment\) is required/);
  }, 70_000);

  it('gateway with a bad PORT', async () => {
    const r = await runCli(['gateway'], { env: cleanEnv({ REDIS_URL: 'redis://127.0.0.1:1/0', PORT: 'eighty' }), timeoutMs: 60_000 });
    expect(r.code).toBe(78);
    expect(r.stderr).toMatch(/setting PORT \(environment\) must be an integer/);
  }, 70_000);

  it('worker with a bad ADMISSION_MAX_USED_RATIO', async () => {
    const r = await runCli(['worker'], {
      env: cleanEnv({ REDIS_URL: 'redis://127.0.0.1:1/0', ADMISSION_MAX_USED_RATIO: '7' }),
      timeoutMs: 60_000,
    });
    expect(r.code).toBe(78);
    expect(r.stderr).toMatch(/ADMISSION_MAX_USED_RATIO/);
  }, 70_000);

  it('both are listed in --help', async () => {
    const r = await runCli(['--help']);
    expect(r.stdout).toMatch(/^\s+gateway\s/m);
    expect(r.stdout).toMatch(/^\s+worker\s/m);
  }, 70_000);
});
