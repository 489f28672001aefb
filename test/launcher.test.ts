import { mkdtempSync, rmSync, existsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HostState } from '@photoenhance/contracts';
import {
  BIN,
  REPO,
  SAMPLE,
  cleanEnv,
  eventually,
  freePort,
  isGone,
  runCli,
  startLauncher,
  type RunningLauncher,
} from '../apps/cli/test/launch.js';
import { spawn } from 'node:child_process';
import { Redis } from 'ioredis';
import { lockHolder } from './support/chaos.js';
import { FIXTURE_ENGINE, until } from './support/stack.js';

describe('photoenhance start (the launcher)', () => {
  let launcher: RunningLauncher;
  let work: string;

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'pe-launcher-test-'));
    launcher = await startLauncher();
  }, 180_000);

  afterAll(async () => {
    await launcher?.dispose();
    rmSync(work, { recursive: true, force: true });
  }, 60_000);

  it('prints the URLs and records its children in launcher.json', () => {
    const out = launcher.output();
    for (const path of ['/v1/jobs', '/healthz', '/readyz', '/docs', '/dashboard']) expect(out).toContain(`${launcher.url}${path}`);
    expect(out).toContain(`curl -sS -F image=@photo.jpg ${launcher.url}/v1/jobs`);
    const state = launcher.state();
    expect(state.children.map((c) => c.name).sort()).toEqual(['gateway', 'redis', 'worker']);
    expect(state.redisUrl).toBe(join(launcher.varDir, 'redis', 'redis.sock'));
    expect(existsSync(join(launcher.varDir, 'redis', 'appendonlydir'))).toBe(true);
  });

  it('is ready: /readyz answers 200', async () => {
    const res = await fetch(`${launcher.url}/readyz`);
    expect(res.status).toBe(200);
  });

  it('enhances a real photo end to end with the CLI (2x)', async () => {
    const input = join(work, 'group.jpg');
    await sharp(SAMPLE(1)).resize({ width: 320 }).jpeg().toFile(input);
    const meta = await sharp(input).metadata();
    const output = join(work, 'out', 'group_2x.jpg');
    const run = await runCli(['enhance', input, '-o', output, '--scale', '2'], {
      env: cleanEnv({ PHOTOENHANCE_URL: launcher.url }),
      timeoutMs: 120_000,
    });
    expect(run.stderr).not.toMatch(/^error/m);
    expect(run.code).toBe(0);
    expect(run.stdout.trim()).toBe(output);
    const outMeta = await sharp(output).metadata();
    expect(outMeta.format).toBe('jpeg');
    expect(outMeta.width).toBe(meta.width! * 2);
    expect(outMeta.height).toBe(meta.height! * 2);
  }, 150_000);

  it('writes <stem>_enhanced.<ext> beside the input by default', async () => {
    const input = join(work, 'small.png');
    await sharp(SAMPLE(2)).resize({ width: 200 }).png().toFile(input);
    const run = await runCli(['enhance', input, '--quiet'], { env: cleanEnv({ PHOTOENHANCE_URL: launcher.url }), timeoutMs: 120_000 });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout.trim()).toBe(join(work, 'small_enhanced.png'));
    expect((await sharp(join(work, 'small_enhanced.png')).metadata()).format).toBe('png');
  }, 150_000);

  it('stops everything it started on SIGINT, worker first, and exits 0', async () => {
    const state = launcher.state();
    const pids = state.children.map((c) => c.pid);
    // Engine processes belong to the worker; they must go too.
    const system = (await (await fetch(`${launcher.url}/v1/system`)).json()) as { hosts: HostState[] };
    const enginePids = system.hosts.flatMap((h) => h.processes.map((p) => p.pid)).filter((p): p is number => typeof p === 'number');
    launcher.proc.kill('SIGINT');
    const exit = await launcher.exited;
    expect(exit).toEqual({ code: 0, signal: null });
    for (const pid of [...pids, ...enginePids]) await eventually(() => isGone(pid), 5000, `pid ${pid} is gone`);
    const out = launcher.output();
    const order = ['stopping worker', 'stopping gateway', 'stopping redis'].map((s) => out.indexOf(s));
    expect(order.every((i) => i >= 0)).toBe(true);
    expect([...order].sort((a, b) => a - b)).toEqual(order);
    expect(existsSync(join(launcher.varDir, 'launcher.json'))).toBe(false);
  }, 60_000);
});

describe('photoenhance start without redis-server', () => {
  it('fails at once with how to install it (exit 3)', async () => {
    const emptyBin = mkdtempSync(join(tmpdir(), 'pe-nobin-'));
    const varDir = mkdtempSync(join(tmpdir(), 'pe-var-'));
    try {
      const env = cleanEnv({ PATH: emptyBin, PORT: String(await freePort()), PHOTOENHANCE_VAR_DIR: varDir });
      const started = Date.now();
      const result = await new Promise<{ code: number | null; out: string }>((resolve, reject) => {
        const child = spawn(process.execPath, [BIN, 'start'], { env, cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        child.stdout.on('data', (d: Buffer) => (out += d.toString()));
        child.stderr.on('data', (d: Buffer) => (out += d.toString()));
        child.on('error', reject);
        child.on('close', (code) => resolve({ code, out }));
      });
      expect(result.code).toBe(3);
      expect(Date.now() - started).toBeLessThan(15_000);
      expect(result.out).toContain('redis-server is not installed');
      expect(result.out).toContain('sudo apt-get install -y redis-server');
      expect(result.out).toContain('brew install redis');
      expect(result.out).toContain('REDIS_URL=redis://host:6379');
    } finally {
      rmSync(emptyBin, { recursive: true, force: true });
      rmSync(varDir, { recursive: true, force: true });
    }
  }, 30_000);
});

describe('photoenhance start supervises its children', () => {
  let launcher: RunningLauncher;
  let cfgDir: string;
  let cfg: string;

  beforeAll(async () => {
    cfgDir = mkdtempSync(join(tmpdir(), 'pe-launcher-cfg-'));
    cfg = join(cfgDir, 'worker.json');
    // The classic engine replaced by a slow fixture, so a job is still running when its worker is killed.
    writeFileSync(
      cfg,
      JSON.stringify({
        heartbeatMs: 2000,
        engines: [{ name: 'classic', command: [process.execPath, FIXTURE_ENGINE, '--mode', 'sleep', '--delay-ms', '4000'] }],
      }),
    );
    launcher = await startLauncher({ env: { WORKER_CONFIG: cfg } });
  }, 180_000);

  afterAll(async () => {
    await launcher?.dispose();
    rmSync(cfgDir, { recursive: true, force: true });
  }, 60_000);

  const pidOf = (name: string): number | undefined => launcher.state().children.find((c) => c.name === name)?.pid;

  it('a worker killed with SIGKILL mid-job is restarted; its job runs again within 15 s; the gateway and Redis keep running', async () => {
    const before = { worker: pidOf('worker')!, gateway: pidOf('gateway')!, redis: pidOf('redis')! };
    const form = new FormData();
    form.append('format', 'png');
    form.append(
      'image',
      new Blob(
        [
          await sharp({ create: { width: 32, height: 32, channels: 3, background: '#357' } })
            .png()
            .toBuffer(),
        ],
        { type: 'image/png' },
      ),
      'a.png',
    );
    const res = await fetch(`${launcher.url}/v1/jobs`, { method: 'POST', body: form });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    const redis = new Redis({ path: launcher.state().redisUrl, maxRetriesPerRequest: null });
    redis.on('error', () => undefined);
    try {
      const first = await until('the worker to run the job', () => lockHolder(redis, 'classic', id), 60_000, 25);
      expect(first.pid).toBe(before.worker);
      process.kill(before.worker, 'SIGKILL');
      const killedAt = Date.now();
      await until(
        'the restarted worker to run the job',
        () => lockHolder(redis, 'classic', id).then((h) => h && h.token !== first.token),
        60_000,
        50,
      );
      const rerunMs = Date.now() - killedAt;
      console.log(`npm start: the killed worker's job ran again ${rerunMs} ms after the kill`);
      expect(rerunMs).toBeLessThan(15_000);
      await until(
        'the job to complete',
        async () => ((await (await fetch(`${launcher.url}/v1/jobs/${id}`)).json()) as { status: string }).status === 'completed',
        60_000,
        100,
      );
    } finally {
      redis.disconnect();
    }
    await launcher.waitFor(/worker was killed \(SIGKILL[^\n]*restarting it in 1\.0 s/, 10_000);
    await eventually(
      () => {
        const p = pidOf('worker');
        return p !== undefined && p !== before.worker && !isGone(p);
      },
      60_000,
      'a new worker pid in launcher.json',
    );
    expect(pidOf('gateway')).toBe(before.gateway);
    expect(pidOf('redis')).toBe(before.redis);
    expect(isGone(before.gateway) || isGone(before.redis)).toBe(false);
    // The new worker takes jobs: it publishes its host state.
    const pid = pidOf('worker');
    await eventually(
      async () => {
        const res = await fetch(`${launcher.url}/v1/system`);
        const { hosts } = (await res.json()) as { hosts: HostState[] };
        return hosts.some((h) => h.pid === pid);
      },
      60_000,
      'the restarted worker to publish its host state',
    );
    expect(launcher.proc.exitCode).toBeNull();
  }, 120_000);

  it('Redis killed with SIGKILL is restarted on the same address with its data; the gateway is ready again', async () => {
    const before = pidOf('redis')!;
    process.kill(before, 'SIGKILL');
    await launcher.waitFor(/redis was killed[^\n]*restarting it/, 10_000);
    await eventually(
      () => {
        const p = pidOf('redis');
        return p !== undefined && p !== before && !isGone(p);
      },
      30_000,
      'a new redis pid',
    );
    await eventually(async () => (await fetch(`${launcher.url}/readyz`)).status === 200, 30_000, '/readyz 200 again');
  }, 60_000);

  it('a child that exits with the configuration-error code (78) is not restarted: everything stops and the error shows', async () => {
    writeFileSync(cfg, JSON.stringify({ heartbeatMs: 'soon' }));
    const pids = launcher.state().children.map((c) => c.pid);
    process.kill(pidOf('worker')!, 'SIGKILL');
    const exit = await launcher.exited;
    expect(exit.code).toBe(2);
    const out = launcher.output();
    expect(out).toMatch(/heartbeatMs/);
    expect(out).toMatch(/worker exited with code 78 \(configuration error[^\n]*not restarting it/);
    // Started at launch, restarted after each of the two kills, and not after the exit 78.
    expect(out.match(/worker started \(pid/g)?.length).toBe(3);
    for (const pid of pids) await eventually(() => isGone(pid), 10_000, `pid ${pid} is gone`);
  }, 60_000);
});
