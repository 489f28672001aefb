import { spawn, type ChildProcess } from 'node:child_process';
import { constants } from 'node:os';
import { createInterface } from 'node:readline';

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A child the launcher started: its own process group (detached), so a terminal Ctrl-C reaches only the launcher. */
export interface ManagedChild {
  name: string;
  pid: number;
  proc: ChildProcess;
  /** Resolves when the process has exited (never rejects). */
  exited: Promise<ExitInfo>;
  exit: ExitInfo | undefined;
  /** When it was spawned (ms since epoch). */
  startedAt: number;
}

export interface StartChildOptions {
  env: NodeJS.ProcessEnv;
  cwd?: string;
  /** Prefix for every stdout/stderr line passed through ("gateway | "). */
  prefix: string;
}

/**
 * Spawn with an argument array (never a shell string) and wait for the OS to start it: rejects with the spawn error
 * (ENOENT when the program is not installed) instead of reporting it later as an exit.
 */
export function startChild(name: string, command: string, args: string[], opts: StartChildOptions): Promise<ManagedChild> {
  return new Promise((resolvePromise, reject) => {
    const proc = spawn(command, args, { env: opts.env, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const onError = (err: Error): void => reject(err);
    proc.once('error', onError);
    proc.once('spawn', () => {
      proc.removeListener('error', onError);
      // Later errors (a failed kill) must not crash the launcher.
      proc.on('error', () => undefined);
      passThrough(proc.stdout!, process.stdout, opts.prefix);
      passThrough(proc.stderr!, process.stderr, opts.prefix);
      const child: ManagedChild = {
        name,
        pid: proc.pid!,
        proc,
        exit: undefined,
        startedAt: Date.now(),
        exited: new Promise<ExitInfo>((done) => {
          proc.once('exit', (code, signal) => {
            child.exit = { code, signal };
            done(child.exit);
          });
        }),
      };
      resolvePromise(child);
    });
  });
}

function passThrough(from: NodeJS.ReadableStream, to: NodeJS.WritableStream, prefix: string): void {
  const rl = createInterface({ input: from, crlfDelay: Infinity });
  rl.on('line', (line) => {
    to.write(`${prefix}${line}\n`);
  });
}

/**
 * The termination ladder: `signal` to the process, then SIGKILL to its whole group after `graceMs`, then await the exit.
 * Idempotent; returns at once for a child that already exited.
 */
export async function stopChild(
  child: ManagedChild,
  graceMs: number,
  signal: NodeJS.Signals = 'SIGTERM',
): Promise<ExitInfo & { escalated: boolean }> {
  if (child.exit) return { ...child.exit, escalated: false };
  signalChild(child, signal, false);
  let timer: NodeJS.Timeout | undefined;
  let escalated = false;
  const killed = new Promise<void>((done) => {
    timer = setTimeout(() => {
      escalated = true;
      signalChild(child, 'SIGKILL', true);
      done();
    }, graceMs);
  });
  await Promise.race([child.exited, killed]);
  clearTimeout(timer);
  const info = await child.exited;
  // Anything the child left in its group (a grandchild that ignored the parent's exit) goes too.
  signalChild(child, 'SIGKILL', true);
  return { ...info, escalated };
}

/** Send a signal to the child or its whole process group; a process that is already gone is not an error. */
export function signalChild(child: ManagedChild, signal: NodeJS.Signals, group: boolean): void {
  try {
    process.kill(group ? -child.pid : child.pid, signal);
  } catch {
    // ESRCH: already gone
  }
}

const SIGNAL_WORDS: Partial<Record<string, string>> = {
  SIGKILL: 'was killed (SIGKILL: out of memory, or killed by hand)',
  SIGTERM: 'was terminated (SIGTERM)',
  SIGINT: 'was interrupted (SIGINT)',
  SIGSEGV: 'crashed with a segmentation fault (SIGSEGV)',
  SIGABRT: 'aborted (SIGABRT)',
  SIGBUS: 'crashed with a bus error (SIGBUS)',
  SIGHUP: 'hung up (SIGHUP)',
};

/** The one place a child's end becomes words: "worker exited with code 1", "gateway was killed (SIGKILL: …)". */
export function describeExit(name: string, info: ExitInfo): string {
  if (info.signal) {
    const words = SIGNAL_WORDS[info.signal] ?? `was stopped by signal ${info.signal} (${constants.signals[info.signal] ?? '?'})`;
    return `${name} ${words}`;
  }
  const meaning = info.code === 78 ? ' (configuration error, see its message above)' : '';
  return `${name} exited with code ${info.code ?? '?'}${meaning}`;
}
