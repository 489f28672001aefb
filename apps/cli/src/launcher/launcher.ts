import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { redisOptions } from '@photoenhance/queue';
import { CliError, EXIT, explain } from '../exit.js';
import { REPO_ROOT } from '../paths.js';
import { describeExit, signalChild, startChild, stopChild, type ExitInfo, type ManagedChild } from './children.js';
import { canListen } from './ports.js';
import { startPrivateRedis, waitForPing } from './redis.js';

export interface LauncherSettings {
  env: NodeJS.ProcessEnv;
  /** Redis data, default storage and launcher.json live here. */
  varDir: string;
  host: string;
  port: number;
  storageDir: string;
  /** An existing Redis (REDIS_URL); when absent a private redis-server is started. */
  redisUrl: string | undefined;
  /** SIGTERM → SIGKILL grace per child. */
  graceMs: number;
  gatewayReadyMs: number;
  workerReadyMs: number;
}

/** What launcher.json holds while the launcher runs: tests and scripts read the pids from it. */
export interface LauncherState {
  pid: number;
  startedAt: string;
  url: string;
  varDir: string;
  storageDir: string;
  redisUrl: string;
  children: Array<{ name: string; pid: number }>;
}

/** A second signal this soon after the first is the same Ctrl-C delivered twice, not a request to force. */
const DUPLICATE_SIGNAL_MS = 1000;

/** The exit code of a configuration error (EX_CONFIG): restarting cannot help, so the launcher stops and says why. */
export const CONFIG_ERROR_EXIT = 78;

/**
 * Restarts of a child that died: 1 s, 2 s, 4 s … 30 s apart; a child that stayed up STABLE_MS starts over at 1 s.
 * More than MAX_RESTARTS within RESTART_WINDOW_MS is a crash loop: the launcher stops everything and says so.
 */
export const RESTART = { baseMs: 1_000, maxMs: 30_000, stableMs: 60_000, max: 5, windowMs: 5 * 60_000 };

const PREFIX = { launcher: 'launcher | ', gateway: 'gateway  | ', worker: 'worker   | ' };

/**
 * `photoenhance start`: Redis (private unless REDIS_URL), then the gateway, then the worker, each in its own process
 * group so only the launcher sees a terminal Ctrl-C; it then stops them in order: worker, gateway, Redis.
 * Once all are ready it supervises them: a child that dies is restarted with backoff while the others keep running.
 */
export class Launcher {
  private readonly s: LauncherSettings;
  /** In start order; stopped in reverse. */
  private readonly children: ManagedChild[] = [];
  private readonly abort = new AbortController();
  private stopRequest: ((code: number) => void) | undefined;
  private readonly stopRequested: Promise<number>;
  private stopping = false;
  private readonly stateFile: string;
  private readonly baseUrl: string;
  /** Set once everything answered: from then on a child that dies is restarted instead of ending the launch. */
  private supervising = false;
  private redisUrl = '';
  private appEnv: NodeJS.ProcessEnv = {};
  private readonly restarts = new Map<string, { times: number[]; delayMs: number }>();

  constructor(settings: LauncherSettings) {
    this.s = settings;
    this.stateFile = join(settings.varDir, 'launcher.json');
    this.baseUrl = `http://${displayHost(settings.host)}:${settings.port}`;
    this.stopRequested = new Promise<number>((r) => (this.stopRequest = r));
  }

  async run(): Promise<number> {
    this.installSignalHandlers();
    const started = this.startAll().then(
      () => undefined,
      (err: unknown) => {
        if (this.stopping) return; // a stop was requested mid-start: the abort is expected
        const { message, exitCode } = explain(err);
        this.say(message, true);
        this.requestStop(exitCode);
      },
    );
    const code = await this.stopRequested;
    this.abort.abort();
    await started;
    await this.stopAll();
    rmSync(this.stateFile, { force: true });
    return code;
  }

  private async startAll(): Promise<void> {
    const t0 = Date.now();
    mkdirSync(this.s.varDir, { recursive: true });
    this.refuseSecondLauncher();
    const busy = await canListen(this.s.host, this.s.port);
    if (busy) {
      const why = busy === 'EADDRINUSE' ? 'is in use (another gateway running?)' : `cannot be bound (${busy})`;
      throw new CliError(EXIT.USAGE, `error: ${this.s.host}:${this.s.port} ${why}; choose another with PORT=8081 npm start (or HOST=…)`);
    }

    let redisUrl: string;
    // Sentinel or Cluster settings pass through to the apps untouched (they parse them); no private Redis then.
    const routed = routedRedis(this.s.env);
    if (routed) {
      redisUrl = routed;
      this.say(`using Redis via ${routed}`);
    } else if (this.s.redisUrl) {
      redisUrl = this.s.redisUrl;
      this.say(`using Redis at REDIS_URL=${redisUrl}`);
      try {
        await waitForPing(redisOptions(redisUrl), 5000, `Redis at REDIS_URL=${redisUrl}`, this.abort.signal);
      } catch (err) {
        if (err instanceof CliError)
          throw new CliError(
            err.exitCode,
            `${err.message}\nhint: start that Redis, correct REDIS_URL, or unset it to let the launcher start a private redis-server`,
          );
        throw err;
      }
    } else {
      const redis = await startPrivateRedis(this.s.varDir, { env: this.s.env, signal: this.abort.signal, onSpawn: (c) => this.adopt(c) });
      redisUrl = redis.url;
      this.say(`redis-server ready (pid ${redis.child.pid}, ${redisUrl})`);
    }
    this.redisUrl = redisUrl;
    this.writeState(redisUrl);

    this.appEnv = {
      ...this.s.env,
      ...(routed ? {} : { REDIS_URL: redisUrl }),
      STORAGE_DIR: this.s.storageDir,
      TSX_TSCONFIG_PATH: this.s.env.TSX_TSCONFIG_PATH ?? join(REPO_ROOT, 'tsconfig.json'),
    };
    const gateway = await this.spawnApp('gateway');
    this.writeState(redisUrl);
    const worker = await this.spawnApp('worker');
    this.writeState(redisUrl);

    await this.poll(`gateway (${this.baseUrl}/readyz)`, this.s.gatewayReadyMs, async (signal) => {
      const res = await fetch(`${this.baseUrl}/readyz`, { signal });
      await res.body?.cancel();
      return res.status === 200 ? true : `readyz answered ${res.status}`;
    });
    this.say(`gateway ready (pid ${gateway.pid}); waiting for the worker to publish its host state`);
    await this.poll(`worker (${this.baseUrl}/v1/system)`, this.s.workerReadyMs, async (signal) => {
      const res = await fetch(`${this.baseUrl}/v1/system`, { signal });
      if (res.status !== 200) {
        await res.body?.cancel();
        return `/v1/system answered ${res.status}`;
      }
      const { hosts } = (await res.json()) as { hosts: Array<{ pid?: number }> };
      // With a shared Redis other hosts may be listed: wait for ours. A private Redis holds only ours.
      const ours = hosts.some((h) => h.pid === worker.pid) || (!this.s.redisUrl && !routed && hosts.length >= 1);
      return ours ? true : `${hosts.length} host(s) listed, not yet this worker`;
    });
    this.printReady(Date.now() - t0);
    this.supervising = true;
  }

  private async spawnApp(name: 'gateway' | 'worker'): Promise<ManagedChild> {
    this.abort.signal.throwIfAborted();
    const argv = appArgv(name, this.appEnv);
    const main = argv[argv.length - 1]!;
    if (!existsSync(main)) throw new CliError(EXIT.FAILED, `error: ${main} does not exist; is the checkout complete?`);
    const env = name === 'gateway' ? { ...this.appEnv, HOST: this.s.host, PORT: String(this.s.port) } : this.appEnv;
    const child = await startChild(name, process.execPath, argv, { env, prefix: PREFIX[name] });
    this.adopt(child);
    this.say(`${name} started (pid ${child.pid})`);
    return child;
  }

  /**
   * Track a child for shutdown. Before everything is ready its exit fails the launch (a broken setup); afterwards it is
   * restarted with backoff, unless it reported a configuration error or keeps dying (then everything stops).
   */
  private adopt(child: ManagedChild): void {
    this.children.push(child);
    void child.exited.then((info) => {
      if (this.stopping) return;
      if (!this.supervising) {
        this.say(`${describeExit(child.name, info)}; stopping the rest`, true);
        this.requestStop(EXIT.FAILED);
        return;
      }
      if (info.code === CONFIG_ERROR_EXIT) {
        this.say(
          `${describeExit(child.name, info)}; not restarting it: correct the setting its message names, then start again. Stopping the rest`,
          true,
        );
        this.requestStop(EXIT.USAGE);
        return;
      }
      void this.restart(child, info);
    });
  }

  /** Start a dead child again after its backoff; a crash loop stops everything. Other children keep running. */
  private async restart(dead: ManagedChild, info: ExitInfo): Promise<void> {
    const now = Date.now();
    const r = this.restarts.get(dead.name) ?? { times: [], delayMs: RESTART.baseMs };
    // A child that ran for a while died of something new, not of the same start-up fault: start over at the base delay.
    if (now - dead.startedAt >= RESTART.stableMs) r.delayMs = RESTART.baseMs;
    r.times = r.times.filter((t) => now - t < RESTART.windowMs);
    if (r.times.length >= RESTART.max) {
      this.say(
        `${describeExit(dead.name, info)}, the ${r.times.length + 1}th time within ${RESTART.windowMs / 60_000} min: giving up; see its messages above. Stopping the rest`,
        true,
      );
      this.requestStop(EXIT.FAILED);
      return;
    }
    r.times.push(now);
    const delayMs = r.delayMs;
    r.delayMs = Math.min(RESTART.maxMs, r.delayMs * 2);
    this.restarts.set(dead.name, r);
    this.say(
      `${describeExit(dead.name, info)}; restarting it in ${(delayMs / 1000).toFixed(1)} s (restart ${r.times.length} of at most ${RESTART.max} within ${RESTART.windowMs / 60_000} min)`,
      true,
    );
    // A stop during the backoff ends the wait at once (run() aborts on stop).
    const waited = await delay(delayMs, true, { signal: this.abort.signal }).catch(() => false);
    if (!waited || this.stopping) return;
    const i = this.children.indexOf(dead);
    if (i >= 0) this.children.splice(i, 1);
    try {
      const child = dead.name === 'redis' ? (await this.restartRedis()).child : await this.spawnApp(dead.name as 'gateway' | 'worker');
      this.writeState(this.redisUrl);
      this.say(`${dead.name} restarted (pid ${child.pid})`);
    } catch (err) {
      if (this.stopping) return;
      this.say(`${dead.name} could not be restarted: ${explain(err).message}; stopping the rest`, true);
      this.requestStop(EXIT.FAILED);
    }
  }

  /** The private Redis again, on the same data dir and address (the gateway and worker reconnect by themselves). */
  private restartRedis(): ReturnType<typeof startPrivateRedis> {
    const port = this.redisUrl.startsWith('redis://') ? Number(new URL(this.redisUrl).port) : undefined;
    return startPrivateRedis(this.s.varDir, {
      env: this.s.env,
      signal: this.abort.signal,
      onSpawn: (c) => this.adopt(c),
      ...(port ? { port } : {}),
    });
  }

  private requestStop(code: number): void {
    if (this.stopping) return;
    this.stopping = true;
    this.stopRequest?.(code);
  }

  /** Worker first (it stops its engines), then the gateway, then Redis; each SIGTERM, SIGKILL after the grace. */
  private async stopAll(): Promise<void> {
    const order = ['worker', 'gateway', 'redis'];
    const sorted = [...this.children].sort((a, b) => order.indexOf(a.name) - order.indexOf(b.name));
    for (const child of sorted) {
      if (child.exit) continue;
      this.say(`stopping ${child.name} (pid ${child.pid})`);
      const info = await stopChild(child, this.s.graceMs);
      if (info.escalated)
        this.say(
          `${child.name} did not stop within ${this.s.graceMs / 1000} s of SIGTERM; killed it and its process group (SIGKILL)`,
          true,
        );
      else if (info.code === 0 || info.signal === 'SIGTERM') this.say(`${child.name} stopped`);
      else this.say(`${describeExit(child.name, info)} while stopping`, true);
    }
  }

  private installSignalHandlers(): void {
    let firstAt: number | undefined;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (firstAt === undefined) {
        firstAt = Date.now();
        this.say(`${signal}: stopping (press Ctrl-C again to kill everything now)`);
        this.requestStop(EXIT.OK);
        return;
      }
      // `npm start` forwards the terminal's SIGINT to us, which got it from the terminal too: one Ctrl-C, two signals.
      if (Date.now() - firstAt < DUPLICATE_SIGNAL_MS) return;
      this.say(`${signal} again: killing every process now`, true);
      this.killAll();
      rmSync(this.stateFile, { force: true });
      process.exit(EXIT.INTERRUPTED);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    process.on('SIGHUP', onSignal);
    // Last resort if the launcher itself dies of an error: take its children with it (SIGKILL of the launcher cannot be caught).
    process.on('exit', () => this.killAll());
    // A closed terminal or pipe must not crash the launcher and orphan its children.
    process.stdout.on('error', () => undefined);
    process.stderr.on('error', () => undefined);
  }

  private killAll(): void {
    for (const c of this.children) if (!c.exit) signalChild(c, 'SIGKILL', true);
  }

  private async poll(what: string, deadlineMs: number, probe: (signal: AbortSignal) => Promise<true | string>): Promise<void> {
    const deadline = Date.now() + deadlineMs;
    let last = 'no answer yet';
    for (let delay = 100; ; delay = Math.min(1000, Math.round(delay * 1.5))) {
      this.abort.signal.throwIfAborted();
      try {
        const r = await probe(AbortSignal.any([this.abort.signal, AbortSignal.timeout(3000)]));
        if (r === true) return;
        last = r;
      } catch (err) {
        this.abort.signal.throwIfAborted();
        last = (err as Error).message;
      }
      if (Date.now() + delay > deadline)
        throw new CliError(EXIT.FAILED, `error: ${what} not ready within ${Math.round(deadlineMs / 1000)} s (last: ${last})`);
      await new Promise((r) => setTimeout(r, delay));
    }
  }

  private refuseSecondLauncher(): void {
    let prev: LauncherState;
    try {
      prev = JSON.parse(readFileSync(this.stateFile, 'utf8')) as LauncherState;
    } catch {
      return;
    }
    if (prev.pid !== process.pid && isAlive(prev.pid, 'photoenhance')) {
      throw new CliError(
        EXIT.USAGE,
        `error: another launcher (pid ${prev.pid}) is running with ${this.s.varDir}; stop it first, or set PHOTOENHANCE_VAR_DIR to another folder`,
      );
    }
    // A launcher that was killed outright leaves its children: say so rather than fight them for the socket.
    const leftovers = prev.children.filter((c) => isAlive(c.pid, c.name === 'redis' ? 'redis-server' : `apps/${c.name}/`));
    if (leftovers.length) {
      throw new CliError(
        EXIT.USAGE,
        `error: processes of an earlier launcher are still running (${leftovers.map((c) => `${c.name} pid ${c.pid}`).join(', ')}); stop them (kill ${leftovers.map((c) => c.pid).join(' ')}) and start again`,
      );
    }
  }

  private writeState(redisUrl: string): void {
    const state: LauncherState = {
      pid: process.pid,
      startedAt: new Date().toISOString(),
      url: this.baseUrl,
      varDir: this.s.varDir,
      storageDir: this.s.storageDir,
      redisUrl,
      children: this.children.map((c) => ({ name: c.name, pid: c.pid })),
    };
    const tmp = `${this.stateFile}.${process.pid}.tmp`;
    writeFileSync(tmp, `${JSON.stringify(state, null, 2)}\n`);
    renameSync(tmp, this.stateFile);
  }

  private printReady(ms: number): void {
    const u = this.baseUrl;
    const pids = this.children.map((c) => `${c.name} ${c.pid}`).join(', ');
    const lines = [
      `ready: ${u} in ${(ms / 1000).toFixed(1)} s (pids: ${pids}; ${this.stateFile})`,
      '',
      `  API base     ${u}/v1`,
      `  jobs         ${u}/v1/jobs`,
      `  health       ${u}/healthz`,
      `  readiness    ${u}/readyz`,
      `  API docs     ${u}/docs`,
      `  dashboard    ${u}/dashboard`,
      '',
      `  try:  curl -sS -F image=@photo.jpg ${u}/v1/jobs`,
      // The CLI finds this launcher by its state file, but only with the same PHOTOENHANCE_VAR_DIR: name the URL unless it is the default.
      `   or:  node ${join('apps', 'cli', 'bin', 'photoenhance.js')} enhance photo.jpg${u === 'http://127.0.0.1:8080' ? '' : ` --url ${u}`}`,
      '  stop: Ctrl-C',
      '',
    ];
    process.stdout.write(`${lines.map((l) => (l ? PREFIX.launcher + l : '')).join('\n')}\n`);
  }

  private say(message: string, error = false): void {
    const text = `${message
      .split('\n')
      .map((l) => PREFIX.launcher + l)
      .join('\n')}\n`;
    (error ? process.stderr : process.stdout).write(text);
  }
}

/**
 * How a child app runs: the launcher compiled (scripts/build-runtime.mjs defines PHOTOENHANCE_COMPILED) runs the compiled
 * app, with no TypeScript loader in the process; the launcher run from sources (PHOTOENHANCE_DEV=1) runs the sources.
 */
export function appArgv(name: 'gateway' | 'worker', env: NodeJS.ProcessEnv = process.env): string[] {
  const flags = appNodeFlags(env);
  if (process.env.PHOTOENHANCE_COMPILED === '1') return [...flags, join(REPO_ROOT, `apps/${name}/dist/main.js`)];
  return [...flags, '--import', import.meta.resolve('tsx'), join(REPO_ROOT, `apps/${name}/src/main.ts`)];
}

/**
 * V8's young generation grows to 2 × 16 MiB by default and stays there: about 20 MiB of an idle app's RSS. 2 MiB
 * semi-spaces keep the gateway and worker small; their allocations are short-lived and mostly off-heap (Buffers), so
 * the extra scavenges cost little. A NODE_OPTIONS that sets the size itself wins.
 */
function appNodeFlags(env: NodeJS.ProcessEnv): string[] {
  return /semi-space-size/.test(env.NODE_OPTIONS ?? '') ? [] : ['--max-semi-space-size=2'];
}

/** Alive, and (where /proc tells) still the program we started: a stale launcher.json after a reboot names reused pids. */
function isAlive(pid: number, cmdlineHas: string): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(cmdlineHas);
  } catch {
    return !existsSync('/proc/self');
  }
}

/** Where to reach a server bound to `host` from this machine. */
export function displayHost(host: string): string {
  if (host === '0.0.0.0' || host === '') return '127.0.0.1';
  if (host === '::') return '[::1]';
  return host.includes(':') ? `[${host}]` : host;
}

export function resolveStorageDir(env: NodeJS.ProcessEnv, varDir: string): string {
  return env.STORAGE_DIR ? resolve(env.STORAGE_DIR) : join(varDir, 'storage');
}

/** `REDIS_SENTINELS=…` or `REDIS_CLUSTER_NODES=…` when Redis is reached that way, else undefined. */
function routedRedis(env: NodeJS.ProcessEnv): string | undefined {
  if (env.REDIS_SENTINELS) return `REDIS_SENTINELS=${env.REDIS_SENTINELS} (master ${env.REDIS_SENTINEL_MASTER ?? '?'})`;
  if (env.REDIS_CLUSTER_NODES) return `REDIS_CLUSTER_NODES=${env.REDIS_CLUSTER_NODES}`;
  return undefined;
}
