import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HostState } from '@photoenhance/contracts';
import { BIN, REPO, SAMPLE, cleanEnv, eventually, freePort, isGone, runCli, startLauncher, type RunningLauncher } from '../apps/cli/test/launch.js';
import { spawn } from 'node:child_process';

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
    const run = await runCli(['enhance', input, '-o', output, '--scale', '2'], { env: cleanEnv({ PHOTOENHANCE_URL: launcher.url }), timeoutMs: 120_000 });
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
