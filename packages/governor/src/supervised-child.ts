import { EventEmitter } from 'node:events';
import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { delimiter, isAbsolute, join, resolve as resolvePath } from 'node:path';
import { createInterface } from 'node:readline';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { setTimeout as delay } from 'node:timers/promises';
import { execa } from 'execa';
import type { Logger } from 'pino';
import type { EnforcementMode } from '@photoenhance/contracts';
import { CgroupSlot } from './cgroup.js';
import { describeExit, formatBytes } from './child-failure.js';
import type { EnforcementPlan } from './enforcement.js';
import { MemoryWatchdog } from './watchdog.js';

export interface ChildSpec {
  /** Profile name, for messages. */
  label: string;
  /** Unique per host and governor: the cgroup leaf name. */
  slotName: string;
  argv: readonly string[];
  env: Record<string, string>;
  cwd?: string;
  limitBytes: number;
  cpuQuota?: number;
  maxOpenFiles?: number;
  plan: EnforcementPlan;
  /** SIGTERM → SIGKILL grace after a memory-limit kill: short, because memory keeps growing meanwhile. */
  memoryGraceMs: number;
  logger: Logger;
}

export interface MemoryLimitHit {
  by: EnforcementMode;
  limitBytes: number;
  peakBytes: number;
  /** When the watchdog saw the limit passed (watchdog only). */
  detectedAt?: number;
  /** What the kernel recorded in the group (cgroup modes): OOM kills and its own high-water mark. */
  kernel?: { oomKills: number | undefined; peakBytes: number | undefined; limitBytes: number | undefined };
}

export interface ChildExit {
  code: number | null;
  signal: string | null;
  spawnError?: string;
  /** Why we stopped it, when we did (first reason wins). */
  stopReason?: string;
  memoryLimit?: MemoryLimitHit;
  peakBytes: number;
  at: number;
  /** The exit in words: "killed by SIGKILL (signal 9)". */
  words: string;
}

/**
 * Under a cgroup the kernel enforces the limit; the watchdog only backs it up, a margin above it, because tree RSS
 * also counts shared file pages (the node or python binary, libraries) that are charged to another group.
 */
export const backstopFor = (limitBytes: number): number => limitBytes + Math.max(128 * 1024 * 1024, limitBytes * 0.1);

const PRLIMIT = ['/usr/bin/prlimit', '/bin/prlimit'].find((p) => existsSync(p));
let warnedNoPrlimit = false;
/**
 * util-linux `setpriv --pdeathsig KILL` sets the kernel's parent-death signal and execs the engine (kept across exec):
 * a worker killed outright (kill -9, OOM) takes its engines with it at once, instead of leaving orphans that keep
 * computing and writing. Linux only; elsewhere engines rely on stdin EOF (the engine runtime exits on it).
 */
const SETPRIV = process.platform === 'linux' ? ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p)) : undefined;
let setprivWorks: boolean | undefined;
/** util-linux older than 2.33 has setpriv without --pdeathsig: try it once (a few ms) before relying on it. */
function pdeathsigWrapper(): string | undefined {
  if (!SETPRIV) return undefined;
  setprivWorks ??=
    spawnSync(SETPRIV, ['--pdeathsig', 'KILL', '--', process.execPath, '-e', '0'], { stdio: 'ignore', timeout: 5_000 }).status === 0;
  return setprivWorks ? SETPRIV : undefined;
}
let warnedNoSetpriv = false;

/** Whether `cmd` names an executable file (a path, or a name found on PATH). */
function executable(cmd: string, env: Record<string, string>, cwd?: string): boolean {
  const ok = (p: string): boolean => {
    try {
      accessSync(p, constants.X_OK);
      return statSync(p).isFile();
    } catch {
      return false;
    }
  };
  if (!cmd) return false;
  if (cmd.includes('/')) return ok(isAbsolute(cmd) ? cmd : resolvePath(cwd ?? process.cwd(), cmd));
  return (env.PATH ?? process.env.PATH ?? '').split(delimiter).some((dir) => dir && ok(join(dir, cmd)));
}
const TAIL_LINES = 20;

/**
 * One supervised child: spawned from an argv array (never a shell string) in its own process group and, where the
 * plan says so, its own cgroup; watched for memory; stopped by a ladder (SIGTERM to the group, SIGKILL after a grace,
 * await exit). Protocol-agnostic: resident engines and one-shot runs both build on it.
 * Events: 'stdout' (line), 'stderr' (line), 'exit' (ChildExit).
 */
export class SupervisedChild extends EventEmitter {
  pid: number | undefined;
  readonly startedAt = Date.now();
  readonly exited: Promise<ChildExit>;
  exitInfo: ChildExit | undefined;
  enforcement: EnforcementMode = 'watchdog';
  private stopReason: string | undefined;
  private overLimitAt: number | undefined;
  private sub: (ChildProcess & Promise<unknown>) | undefined;
  private slot: CgroupSlot | undefined;
  private oomBefore = 0;
  private watchdog: MemoryWatchdog | undefined;
  private tail: string[] = [];
  private resolveExit!: (e: ChildExit) => void;
  private exitStarted = false;
  private termSent = false;
  private killTimer: NodeJS.Timeout | undefined;
  private killAt = Infinity;

  constructor(readonly spec: ChildSpec) {
    super();
    this.exited = new Promise((r) => (this.resolveExit = r));
  }

  get rssBytes(): number {
    return this.watchdog?.rssBytes ?? 0;
  }

  get peakBytes(): number {
    return Math.max(this.watchdog?.peakBytes ?? 0, this.exitInfo?.peakBytes ?? 0);
  }

  get samplerCpuMicros(): number {
    return this.watchdog?.cpuMicros ?? 0;
  }

  get samples(): number {
    return this.watchdog?.samples ?? 0;
  }

  /** A fresh RSS figure now (between jobs, for the soft mark). */
  sampleNow(opts: { cachedTree?: boolean } = {}): number {
    return this.watchdog && !this.exitInfo ? this.watchdog.sampleNow(opts) : 0;
  }

  stderrTail(): string {
    return this.tail.join('\n').slice(-2000);
  }

  /** Spawn now. Failures to spawn arrive as an exit with spawnError. */
  spawn(): void {
    const s = this.spec;
    let argv = [...s.argv];
    if (s.maxOpenFiles !== undefined) {
      if (PRLIMIT) argv = [PRLIMIT, `--nofile=${s.maxOpenFiles}:${s.maxOpenFiles}`, '--', ...argv];
      else if (!warnedNoPrlimit) {
        warnedNoPrlimit = true;
        s.logger.warn('maxOpenFiles is set but no prlimit binary exists; the engine keeps the inherited RLIMIT_NOFILE');
      }
    }
    if (s.plan.mode !== 'watchdog') {
      try {
        this.slot = CgroupSlot.create(s.plan, s.slotName, { limitBytes: s.limitBytes, ...(s.cpuQuota ? { cpuQuota: s.cpuQuota } : {}) });
        this.oomBefore = this.slot.oomKills() ?? 0;
        this.enforcement = s.plan.mode;
        argv = this.slot.wrap(argv);
      } catch (e) {
        s.logger.warn({ err: e, slot: s.slotName }, 'could not create the engine cgroup; this process runs under the watchdog only');
      }
    }
    // Only for a program that exists: otherwise the spawn must fail as itself (ENOENT), not as setpriv's exit 127.
    const setpriv = pdeathsigWrapper();
    if (setpriv) {
      if (executable(s.argv[0] ?? '', s.env, s.cwd)) argv = [setpriv, '--pdeathsig', 'KILL', '--', ...argv];
    } else if (!warnedNoSetpriv) {
      warnedNoSetpriv = true;
      s.logger.warn(
        'no setpriv with --pdeathsig (util-linux >= 2.33): an engine outlives a worker killed outright until it sees EOF on stdin',
      );
    }
    const sub = execa(argv[0]!, argv.slice(1), {
      detached: true, // own process group: the ladder signals the whole tree
      cleanup: false,
      stdin: 'pipe',
      stdout: 'pipe',
      stderr: 'pipe',
      buffer: false,
      reject: false,
      env: s.env,
      ...(s.cwd ? { cwd: s.cwd } : {}),
      forceKillAfterDelay: false,
    }) as unknown as ChildProcess &
      Promise<{ exitCode?: number; signal?: string; failed?: boolean; originalMessage?: string; shortMessage?: string }>;
    this.sub = sub;
    this.pid = sub.pid;
    sub.stdin?.on('error', () => {}); // EPIPE after the engine died: the exit handler reports it
    if (sub.stdout) createInterface({ input: sub.stdout, crlfDelay: Infinity }).on('line', (l) => this.emit('stdout', l));
    if (sub.stderr) {
      createInterface({ input: sub.stderr, crlfDelay: Infinity }).on('line', (l) => {
        this.tail.push(l.length > 500 ? `${l.slice(0, 500)}…` : l);
        if (this.tail.length > TAIL_LINES) this.tail.shift();
        this.emit('stderr', l);
      });
    }
    sub.once('exit', (code, signal) => void this.onExit(code, signal));
    void sub.then((r) => {
      const spawnError =
        r.failed && r.exitCode === undefined && !r.signal ? (r.originalMessage ?? r.shortMessage ?? 'spawn failed') : undefined;
      void this.onExit(r.exitCode ?? null, (r.signal as NodeJS.Signals | undefined) ?? null, spawnError);
    });
    if (this.pid !== undefined) {
      const slot = this.slot;
      this.watchdog = new MemoryWatchdog({
        pid: this.pid,
        limitBytes: this.slot ? backstopFor(s.limitBytes) : s.limitBytes,
        ...(slot ? { pids: () => slot.pids() } : {}),
        onOver: (rss) => this.onOverLimit(rss),
      });
      this.watchdog.start();
    }
  }

  send(line: string): void {
    const stdin = this.sub?.stdin;
    if (stdin?.writable && !this.exitInfo) stdin.write(line);
  }

  endInput(): void {
    this.sub?.stdin?.end();
  }

  /** The ladder: SIGTERM to the group, SIGKILL after graceMs, await exit. A shorter grace asked later wins. */
  terminate(reason: string, graceMs: number): Promise<ChildExit> {
    this.stopReason ??= reason;
    if (this.exitInfo || this.pid === undefined) return this.exited;
    if (!this.termSent) {
      this.termSent = true;
      this.signal('SIGTERM');
    }
    const at = Date.now() + graceMs;
    if (at < this.killAt) {
      this.killAt = at;
      if (this.killTimer) clearTimeout(this.killTimer);
      this.killTimer = setTimeout(() => this.signal('SIGKILL'), graceMs);
    }
    return this.exited;
  }

  /** Graceful: say goodbye on stdin (farewell line, then EOF), give it graceMs to exit, then the ladder. */
  async shutdown(reason: string, graceMs: number, farewell?: string): Promise<ChildExit> {
    this.stopReason ??= reason;
    if (this.exitInfo || this.pid === undefined) return this.exited;
    if (farewell) this.send(farewell);
    this.endInput();
    const gone = await Promise.race([this.exited.then(() => true), delay(graceMs, false)]);
    return gone ? this.exited : this.terminate(reason, graceMs);
  }

  private signal(sig: NodeJS.Signals): void {
    if (this.pid === undefined) return;
    try {
      process.kill(-this.pid, sig);
    } catch {
      try {
        process.kill(this.pid, sig);
      } catch {
        /* gone already */
      }
    }
    if (sig === 'SIGKILL') this.slot?.killAll();
  }

  private onOverLimit(rss: number): void {
    if (this.overLimitAt !== undefined || this.exitInfo) return;
    this.overLimitAt = Date.now();
    this.spec.logger.warn(
      { enginePid: this.pid, rssBytes: rss, limitBytes: this.spec.limitBytes },
      `engine ${this.spec.label} (pid ${this.pid}) passed its memory limit ${formatBytes(this.spec.limitBytes)}: stopping it`,
    );
    this.emit('over-limit', rss);
    void this.terminate('memory-limit', this.spec.memoryGraceMs);
  }

  private async onExit(code: number | null, signal: NodeJS.Signals | string | null, spawnError?: string): Promise<void> {
    if (this.exitStarted) return;
    this.exitStarted = true;
    if (this.killTimer) clearTimeout(this.killTimer);
    this.watchdog?.stop();
    // Anything of the tree still alive (a helper, a grandchild) goes with the engine.
    if (this.pid !== undefined) {
      try {
        process.kill(-this.pid, 'SIGKILL');
      } catch {
        /* group empty */
      }
    }
    this.slot?.killAll();
    const cgPeak = this.slot?.peakBytes() ?? 0;
    const peakBytes = Math.max(this.watchdog?.peakBytes ?? 0, cgPeak);
    let memoryLimit: MemoryLimitHit | undefined;
    if (this.overLimitAt !== undefined) {
      memoryLimit = { by: 'watchdog', limitBytes: this.spec.limitBytes, peakBytes, detectedAt: this.overLimitAt };
    } else if (this.slot) {
      const ooms = this.slot.oomKills();
      const oom = ooms !== undefined ? ooms > this.oomBefore : signal === 'SIGKILL' && (this.slot.limitHits() ?? 0) > 0;
      if (oom) {
        const kernel = {
          oomKills: ooms === undefined ? undefined : ooms - this.oomBefore,
          peakBytes: this.slot.peakBytes(),
          limitBytes: this.slot.limitBytes(),
        };
        memoryLimit = { by: this.slot.plan.mode, limitBytes: this.spec.limitBytes, peakBytes, kernel };
      }
    }
    // Let the last stdout lines through before reporting the exit; a grandchild holding the pipe must not block us.
    if (this.sub)
      await Promise.race([
        this.sub.then(
          () => undefined,
          () => undefined,
        ),
        delay(500),
      ]);
    this.sub?.stdout?.destroy();
    this.sub?.stderr?.destroy();
    if (this.slot && !(await this.slot.remove())) {
      this.spec.logger.warn({ dirs: this.slot.dirs }, 'engine cgroup could not be removed (still busy)');
    }
    const info: ChildExit = {
      code,
      signal: signal ?? null,
      ...(spawnError ? { spawnError } : {}),
      ...(this.stopReason ? { stopReason: this.stopReason } : {}),
      ...(memoryLimit ? { memoryLimit } : {}),
      peakBytes,
      at: Date.now(),
      words: describeExit(code, signal, spawnError),
    };
    this.exitInfo = info;
    this.resolveExit(info);
    this.emit('exit', info);
  }
}
