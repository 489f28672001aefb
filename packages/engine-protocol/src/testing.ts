/**
 * Test helpers for engines: spawn a real engine process and talk to it over real stdio.
 * Import from '@photoenhance/engine-protocol/testing' (tests only; it uses no test framework).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import {
  encodeMessage,
  parseEngineMessage,
  type CanceledMessage,
  type DoneMessage,
  type EngineToWorker,
  type ErrorMessage,
  type JobRequest,
  type ProgressMessage,
  type ReadyMessage,
  type WorkerToEngine,
} from '@photoenhance/contracts';
import { LineDecoder } from './line-decoder.js';

type ByType<T extends EngineToWorker['type']> = Extract<EngineToWorker, { type: T }>;

export interface EngineExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface JobOutcome {
  /** done, error or canceled for this job id. */
  result: DoneMessage | ErrorMessage | CanceledMessage;
  progress: ProgressMessage[];
}

export class EngineUnderTest {
  readonly child: ChildProcess;
  /** Every message received, in order. */
  readonly messages: EngineToWorker[] = [];
  /** stdout lines that were not protocol messages (should stay empty). */
  readonly badLines: string[] = [];
  readonly exited: Promise<EngineExit>;
  private stderrText = '';
  private readonly consumed = new Set<number>();
  private waiters: Array<() => void> = [];
  private exit: EngineExit | undefined;

  constructor(argv: readonly string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}) {
    const [cmd, ...args] = argv;
    if (!cmd) throw new Error('argv needs a command');
    this.child = spawn(cmd, args, { cwd: opts.cwd, env: { ...process.env, ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    const decoder = new LineDecoder({ onOverflow: ({ head }) => this.badLines.push(`[over-long] ${head}`) });
    this.child.stdout!.on('data', (chunk: Buffer) => {
      for (const line of decoder.push(chunk)) this.accept(line);
    });
    this.child.stdout!.on('end', () => {
      for (const line of decoder.end()) this.accept(line);
    });
    this.child.stderr!.on('data', (chunk: Buffer) => {
      this.stderrText = (this.stderrText + chunk.toString('utf8')).slice(-64_000);
      this.wake();
    });
    // A closed stdin is a normal end of conversation; EPIPE after the engine exits is not a test failure.
    this.child.stdin!.on('error', () => {});
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.exit = { code, signal };
        this.wake();
        resolve(this.exit);
      });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  stderr(): string {
    return this.stderrText;
  }

  /**
   * Wait until stderr contains `text`. stderr is a separate pipe: a line written before a protocol message may still
   * be in flight when that message arrives, so tests must wait for it rather than read stderr() at once.
   */
  async waitForStderr(text: string, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.stderrText.includes(text)) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`stderr never contained ${JSON.stringify(text)}\n${this.describe()}`);
      await this.nextEvent(left);
    }
  }

  /** Send a message, or a raw line (a newline is added if missing). */
  send(msg: WorkerToEngine | string): void {
    const text = typeof msg === 'string' ? (msg.endsWith('\n') ? msg : `${msg}\n`) : encodeMessage(msg);
    this.child.stdin!.write(text);
  }

  closeStdin(): void {
    this.child.stdin!.end();
  }

  /**
   * The first message not yet taken that matches, waiting for it up to timeoutMs.
   * Rejects early if the process exits without sending it.
   */
  async take<T extends EngineToWorker['type']>(
    type: T,
    opts: { id?: string; where?: (m: ByType<T>) => boolean; timeoutMs?: number } = {},
  ): Promise<ByType<T>> {
    const timeoutMs = opts.timeoutMs ?? 30_000;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const idx = this.messages.findIndex(
        (m, i) =>
          !this.consumed.has(i) &&
          m.type === type &&
          (opts.id === undefined || ('id' in m && m.id === opts.id)) &&
          (!opts.where || opts.where(m as ByType<T>)),
      );
      if (idx !== -1) {
        this.consumed.add(idx);
        return this.messages[idx] as ByType<T>;
      }
      if (this.exit)
        throw new Error(
          `engine exited (${JSON.stringify(this.exit)}) before a "${type}" message${opts.id ? ` for ${opts.id}` : ''}\n${this.describe()}`,
        );
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no "${type}" message${opts.id ? ` for ${opts.id}` : ''} within ${timeoutMs} ms\n${this.describe()}`);
      await this.nextEvent(left);
    }
  }

  ready(timeoutMs = 30_000): Promise<ReadyMessage> {
    return this.take('ready', { timeoutMs });
  }

  /** The message that ends job `id` (done, error or canceled), with the progress seen before it. */
  async outcome(id: string, timeoutMs = 60_000): Promise<JobOutcome> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const idx = this.messages.findIndex(
        (m, i) => !this.consumed.has(i) && 'id' in m && m.id === id && (m.type === 'done' || m.type === 'error' || m.type === 'canceled'),
      );
      if (idx !== -1) {
        this.consumed.add(idx);
        const progress = this.messages.slice(0, idx).filter((m): m is ProgressMessage => m.type === 'progress' && m.id === id);
        return { result: this.messages[idx] as JobOutcome['result'], progress };
      }
      if (this.exit) throw new Error(`engine exited (${JSON.stringify(this.exit)}) before job ${id} ended\n${this.describe()}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`job ${id} did not end within ${timeoutMs} ms\n${this.describe()}`);
      await this.nextEvent(left);
    }
  }

  /** Send a job and wait for its outcome. */
  async run(job: Omit<JobRequest, 'type'>, timeoutMs?: number): Promise<JobOutcome> {
    this.send({ type: 'job', ...job });
    return this.outcome(job.id, timeoutMs);
  }

  /** Wait for exit up to timeoutMs; rejects (and kills) if the process is still running then. */
  async waitExit(timeoutMs = 10_000): Promise<EngineExit> {
    const deadline = Date.now() + timeoutMs;
    while (!this.exit) {
      const left = deadline - Date.now();
      if (left <= 0) {
        this.child.kill('SIGKILL');
        throw new Error(`engine still running after ${timeoutMs} ms\n${this.describe()}`);
      }
      await this.nextEvent(left);
    }
    return this.exit;
  }

  /** End the engine for good: close stdin, then SIGKILL if it has not exited within graceMs. Idempotent. */
  async stop(graceMs = 5_000): Promise<EngineExit> {
    if (this.exit) return this.exit;
    this.closeStdin();
    try {
      return await this.waitExit(graceMs);
    } catch {
      return this.exited;
    }
  }

  private accept(line: string): void {
    try {
      this.messages.push(parseEngineMessage(line));
    } catch {
      this.badLines.push(line);
    }
    this.wake();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  private nextEvent(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      this.waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  private describe(): string {
    const msgs = this.messages
      .slice(-10)
      .map((m) => JSON.stringify(m).slice(0, 300))
      .join('\n  ');
    return `last messages:\n  ${msgs || '(none)'}\nstderr tail:\n${this.stderrText.slice(-3000) || '(empty)'}`;
  }
}

/**
 * The argv that runs a TypeScript engine entry: node --import <tsx loader> <entry>. The loader is named by absolute
 * URL so the engine starts from any cwd.
 */
export function tsEngineArgv(entry: string): string[] {
  const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
  return [process.execPath, '--import', tsx, entry];
}
