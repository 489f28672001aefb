import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Test helpers for the CLI and the launcher: real processes, output awaited line by line, never fixed sleeps. */

export const REPO = fileURLToPath(new URL('../../../', import.meta.url));
export const BIN = join(REPO, 'apps/cli/bin/photoenhance.js');
export const SAMPLE = (n: number): string => join(REPO, `node_modules/@vladmandic/face-api/demo/sample${n}.jpg`);

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/** The environment without anything that would point the launcher or CLI somewhere else. */
export function cleanEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of [
    'REDIS_URL',
    'STORAGE_DIR',
    'WORKER_CONFIG',
    'PHOTOENHANCE_URL',
    'PHOTOENHANCE_VAR_DIR',
    'HOST',
    'PORT',
    'GATEWAY_CONFIG',
  ])
    delete env[k];
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

export interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export function runCli(args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {}): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      env: opts.env ?? cleanEnv(),
      cwd: opts.cwd ?? REPO,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new Error(
          `photoenhance ${args.join(' ')} did not finish within ${opts.timeoutMs ?? 60_000} ms\nstdout:\n${stdout}\nstderr:\n${stderr}`,
        ),
      );
    }, opts.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

export interface LauncherState {
  pid: number;
  url: string;
  varDir: string;
  redisUrl: string;
  children: Array<{ name: string; pid: number }>;
}

export interface RunningLauncher {
  proc: ChildProcess;
  varDir: string;
  port: number;
  url: string;
  /** Everything it printed so far (stdout and stderr interleaved). */
  output(): string;
  /** Resolves with the first match of `re` in the output (already printed or yet to come). */
  waitFor(re: RegExp, timeoutMs: number): Promise<RegExpMatchArray>;
  state(): LauncherState;
  /** Resolves when it exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGINT, then SIGKILL to anything left (for afterAll); removes the var dir. */
  dispose(): Promise<void>;
}

/** `photoenhance start` on a free port with its var dir in a temp dir; resolves once it printed "ready:". */
export async function startLauncher(opts: { env?: Record<string, string | undefined>; readyMs?: number } = {}): Promise<RunningLauncher> {
  const varDir = mkdtempSync(join(tmpdir(), 'pe-launch-'));
  const port = await freePort();
  const env = cleanEnv({ PORT: String(port), PHOTOENHANCE_VAR_DIR: varDir, LOG_LEVEL: 'warn', ...opts.env });
  const proc = spawn(process.execPath, [BIN, 'start'], { env, cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const waiters = new Set<() => void>();
  const onData = (d: Buffer): void => {
    out += d.toString();
    for (const w of waiters) w();
  };
  proc.stdout!.on('data', onData);
  proc.stderr!.on('data', onData);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    proc.on('exit', (code, signal) => {
      resolve({ code, signal });
      for (const w of waiters) w();
    });
  });
  let exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  void exited.then((i) => (exitInfo = i));

  const waitFor = (re: RegExp, timeoutMs: number): Promise<RegExpMatchArray> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const m = out.match(re);
        if (m) {
          cleanup();
          resolve(m);
        } else if (exitInfo) {
          cleanup();
          reject(new Error(`launcher exited (${JSON.stringify(exitInfo)}) before printing ${re}:\n${out}`));
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`launcher did not print ${re} within ${timeoutMs} ms:\n${out}`));
      }, timeoutMs);
      const cleanup = (): void => {
        clearTimeout(timer);
        waiters.delete(check);
      };
      waiters.add(check);
      check();
    });

  const state = (): LauncherState => JSON.parse(readFileSync(join(varDir, 'launcher.json'), 'utf8')) as LauncherState;
  let pids: number[] = [];
  const launcher: RunningLauncher = {
    proc,
    varDir,
    port,
    url: `http://127.0.0.1:${port}`,
    output: () => out,
    waitFor,
    state,
    exited,
    async dispose() {
      if (!exitInfo) {
        proc.kill('SIGINT');
        const t = setTimeout(() => proc.kill('SIGKILL'), 30_000);
        await exited;
        clearTimeout(t);
      }
      for (const pid of pids) {
        try {
          process.kill(-pid, 'SIGKILL');
        } catch {
          // gone, as it should be
        }
      }
      rmSync(varDir, { recursive: true, force: true });
    },
  };
  await waitFor(/launcher \| ready: /, opts.readyMs ?? 150_000);
  pids = state().children.map((c) => c.pid);
  return launcher;
}

export function isGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/** Poll `check` until it holds or the deadline passes. */
export async function eventually(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let delay = 20; ; delay = Math.min(500, delay * 2)) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, delay));
  }
}
