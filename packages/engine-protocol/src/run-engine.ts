import { rmSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import {
  PROTOCOL_VERSION,
  encodeMessage,
  type DoneMessage,
  type EngineCapabilities,
  type EngineToWorker,
  type ErrorMessage,
  type JobRequest,
  type LogMessage,
  type WorkerToEngine,
} from '@photoenhance/contracts';
import { EngineError } from './engine-error.js';
import { DEFAULT_MAX_LINE_BYTES, readLines } from './line-decoder.js';
import { jobRefusal, type Phase, type RunningJob, runningJob } from './phase.js';
import { parseWorkerMessage, protocolErrorId } from './worker-messages.js';

export type LogLevel = LogMessage['level'];

export interface EngineContext {
  /** Aborted when the worker cancels this job or the process is told to stop. Check it between steps. */
  signal: AbortSignal;
  /** Report progress (0..1, clamped) with an optional stage name. Ignored once the job is over or aborted. */
  progress(progress: number, stage?: string): void;
  /** A log line the worker attaches to this job. */
  log(level: LogLevel, message: string): void;
}

export interface EngineResult {
  /** Facts about the file written at job.output. */
  output: DoneMessage['output'];
  /** The options the engine honoured, with the values it used; everything else counts as ignored. */
  applied: Record<string, unknown>;
  /** Phase durations in ms; runEngine adds `totalMs`. */
  timings?: Record<string, number>;
  meta?: Record<string, unknown>;
}

export interface EngineDefinition {
  name: string;
  version: string;
  capabilities: EngineCapabilities;
  /** Free-form facts for operators, sent with `ready`; a function is called after `init`. */
  info?: Record<string, unknown> | (() => Record<string, unknown> | Promise<Record<string, unknown>>);
  /** Load models and the like. Runs before `ready`; a throw ends the process with an `error` (no id) and exit code 1. */
  init?: (ctx: { log(level: LogLevel, message: string): void }) => Promise<void>;
  /** Run one job. Write exactly job.output; throw EngineError for a catalogue code. One job at a time is guaranteed. */
  handle(job: JobRequest, ctx: EngineContext): Promise<EngineResult>;
  /** Release resources before a clean exit (shutdown or stdin closed). Not called on SIGTERM. */
  close?: () => Promise<void>;
}

export interface RunEngineOptions {
  /** Longest accepted stdin line. Default 1 MiB. */
  maxLineBytes?: number;
}

let running = false;

/**
 * Turn a handler into an engine process speaking the engine protocol (docs/engine-protocol.md) on stdin/stdout.
 * Never returns: the process exits 0 after `shutdown` (once the current job is answered), at once when stdin closes
 * without a `shutdown` (the worker is gone: the current job is abandoned and its partial output removed), promptly on
 * SIGTERM/SIGINT, and 1 if `init` fails or an exception escapes. The phases are in phase.ts.
 */
export function runEngine(def: EngineDefinition, opts: RunEngineOptions = {}): Promise<never> {
  if (running) throw new Error('runEngine may be called once per process');
  running = true;
  const engine = new EngineProcess(def, claimStdout());
  const maxLineBytes = opts.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;

  readLines(process.stdin, (line) => engine.onLine(line), {
    maxLineBytes,
    onOverflow: ({ head, bytes }) => {
      engine.send({
        type: 'error',
        code: 'ENGINE_PROTOCOL_ERROR',
        message: `dropped a line over ${bytes} bytes (limit ${maxLineBytes}): ${head.slice(0, 80)}`,
        retryable: false,
      });
    },
    onEnd: () => engine.onStdinEnd(),
  });
  process.stdin.on('error', () => engine.terminate());
  // The worker is gone: nobody can read our answers any more.
  process.stdout.on('error', () => engine.exit(0));
  process.once('SIGTERM', () => engine.terminate());
  process.once('SIGINT', () => engine.terminate());
  process.on('uncaughtException', (err) => engine.crash('uncaught exception', err, err.stack));
  process.on('unhandledRejection', (reason) =>
    engine.crash('unhandled rejection', reason, reason instanceof Error ? reason.stack : undefined),
  );
  void engine.start();
  return new Promise<never>(() => {});
}

/** One engine process: the phase it is in (phase.ts) and what each event does to it. */
class EngineProcess {
  private phase: Phase = { is: 'starting' };

  constructor(
    private readonly def: EngineDefinition,
    private readonly write: (text: string, cb?: () => void) => void,
  ) {}

  send(msg: EngineToWorker): void {
    this.write(encodeMessage(msg));
  }

  private log(level: LogLevel, message: string, id?: string): void {
    this.send({ type: 'log', level: LOG_LEVELS.has(level) ? level : 'info', message: String(message), ...(id ? { id } : {}) });
  }

  /** starting -> idle (`ready` sent), or -> exiting with exit code 1 when init fails. */
  async start(): Promise<void> {
    const { def } = this;
    try {
      await def.init?.({ log: (level, message) => this.log(level, message) });
      const info = typeof def.info === 'function' ? await def.info() : def.info;
      if (this.phase.is !== 'starting') return; // stopped while starting
      this.phase = { is: 'idle' };
      this.send({
        type: 'ready',
        protocol: PROTOCOL_VERSION,
        engine: def.name,
        version: def.version,
        capabilities: def.capabilities,
        ...(info ? { info } : {}),
      });
    } catch (err) {
      if (this.phase.is === 'exiting') return;
      const e = toErrorMessage(err, undefined);
      this.send({ ...e, code: err instanceof EngineError ? err.code : 'ENGINE_START_FAILED', message: `start-up failed: ${e.message}` });
      this.exit(1);
    }
  }

  onLine(line: string): void {
    if (this.phase.is === 'exiting') return;
    let msg: WorkerToEngine;
    try {
      msg = parseWorkerMessage(line);
    } catch (err) {
      const id = protocolErrorId(err);
      this.send({
        type: 'error',
        ...(id ? { id } : {}),
        code: 'ENGINE_PROTOCOL_ERROR',
        message: `rejected a message: ${describe(err)}`,
        retryable: false,
      });
      return;
    }
    switch (msg.type) {
      case 'job': {
        const refuse = jobRefusal(this.phase);
        if (refuse) {
          this.send({ type: 'error', id: msg.id, code: 'ENGINE_PROTOCOL_ERROR', message: `job refused: ${refuse}`, retryable: true });
          return;
        }
        void this.runJob(msg);
        return;
      }
      case 'cancel': {
        const job = runningJob(this.phase);
        if (job && job.id === msg.id) {
          if (!job.canceled) {
            job.canceled = true;
            job.controller.abort(new EngineError('JOB_CANCELED', 'canceled by the worker', false));
          }
        } else {
          this.log('debug', `cancel for ${msg.id} ignored: it is not running`);
        }
        return;
      }
      case 'shutdown':
        this.shutdown();
        return;
    }
  }

  /**
   * EOF after `shutdown` is the graceful goodbye. EOF without it means the worker died (or dropped us): nobody will
   * commit this job's result, so stop at once instead of computing and writing on as an orphan.
   */
  onStdinEnd(): void {
    const shutdownRequested = (this.phase.is === 'busy' && this.phase.draining) || this.phase.is === 'closing';
    if (shutdownRequested) this.shutdown();
    else this.terminate();
  }

  /** `shutdown`: starting -> exiting; idle -> closing; busy -> busy (draining). */
  private shutdown(): void {
    switch (this.phase.is) {
      case 'starting':
        this.exit(0);
        return;
      case 'idle':
        void this.close();
        return;
      case 'busy':
        this.phase.draining = true; // runJob closes once the job is answered
        return;
      case 'closing':
      case 'exiting':
        return;
    }
  }

  /** closing: release the engine's resources, then exit 0. */
  private async close(): Promise<void> {
    this.phase = { is: 'closing' };
    try {
      await this.def.close?.();
    } catch (err) {
      process.stderr.write(`[${this.def.name}] close failed: ${describe(err)}\n`);
    }
    this.exit(0);
  }

  /** Stop now (SIGTERM/SIGINT, stdin gone): the running job is answered `canceled` and its partial output removed. */
  terminate(): void {
    const job = runningJob(this.phase);
    if (job) {
      job.canceled = true;
      job.controller.abort(new EngineError('JOB_CANCELED', 'the engine process is stopping', true));
      removeQuietly(job.output);
      this.send({ type: 'canceled', id: job.id });
    }
    this.exit(0);
  }

  /** An exception escaped the handler: tell the worker (for the running job), exit 1. */
  crash(what: string, err: unknown, stack: string | undefined): void {
    const job = runningJob(this.phase);
    process.stderr.write(`[${this.def.name}] ${what}: ${stack ?? describe(err)}\n`);
    this.send({
      type: 'error',
      ...(job ? { id: job.id } : {}),
      code: 'ENGINE_FAILED',
      message: `${what}: ${describe(err)}`,
      retryable: true,
    });
    this.exit(1);
  }

  /** -> exiting (final). */
  exit(code: number): void {
    if (this.phase.is === 'exiting') return;
    this.phase = { is: 'exiting' };
    // stdout to a pipe is synchronous on Linux; the callback also covers other platforms. The timer is a backstop
    // for a reader that stopped reading.
    const timer = setTimeout(() => process.exit(code), 2000);
    this.write('', () => {
      clearTimeout(timer);
      process.exit(code);
    });
  }

  /** idle -> busy -> idle (or -> closing when a shutdown came meanwhile). */
  private async runJob(job: JobRequest): Promise<void> {
    const cur: RunningJob = { id: job.id, output: job.output, controller: new AbortController(), canceled: false };
    this.phase = { is: 'busy', job: cur, draining: false };
    const isCurrent = (): boolean => runningJob(this.phase) === cur;
    const started = performance.now();
    const ctx: EngineContext = {
      signal: cur.controller.signal,
      progress: (p, stage) => {
        if (!isCurrent() || cur.controller.signal.aborted || !Number.isFinite(p)) return;
        const progress = Math.round(Math.min(1, Math.max(0, p)) * 10_000) / 10_000;
        this.send({ type: 'progress', id: cur.id, progress, ...(stage ? { stage } : {}) });
      },
      log: (level, message) => {
        if (isCurrent()) this.log(level, message, cur.id);
      },
    };
    let reply: EngineToWorker;
    try {
      reply = answer(cur, await this.def.handle(job, ctx), started);
    } catch (err) {
      reply = cur.canceled ? { type: 'canceled', id: cur.id } : toErrorMessage(err, cur.id);
    }
    if (this.phase.is !== 'busy') return; // exiting: SIGTERM already answered this job
    const draining = this.phase.draining;
    if (reply.type !== 'done') removeQuietly(cur.output);
    this.phase = { is: 'idle' };
    this.send(reply);
    if (draining) void this.close();
  }
}

/** The reply to a job whose handler returned `result`. */
function answer(cur: RunningJob, result: EngineResult, started: number): EngineToWorker {
  if (cur.canceled) return { type: 'canceled', id: cur.id };
  if (!result || typeof result !== 'object' || typeof result.output !== 'object' || result.output === null) {
    return {
      type: 'error',
      id: cur.id,
      code: 'ENGINE_FAILED',
      message: 'the engine handler returned no output description',
      retryable: true,
    };
  }
  const totalMs = Math.round(performance.now() - started);
  return {
    type: 'done',
    id: cur.id,
    output: result.output,
    applied: result.applied ?? {},
    timings: { totalMs, ...result.timings },
    ...(result.meta ? { meta: result.meta } : {}),
  };
}

const LOG_LEVELS = new Set<LogLevel>(['debug', 'info', 'warn', 'error']);

/**
 * Keep stdout for protocol messages: anything else written through process.stdout (console.log, a chatty library)
 * goes to stderr instead. Returns the only writer that still reaches stdout. Native code writing to fd 1 directly
 * cannot be caught here.
 */
function claimStdout(): (text: string, cb?: () => void) => void {
  const stdout = process.stdout;
  const write = stdout.write.bind(stdout) as (chunk: string, cb?: (err?: Error | null) => void) => boolean;
  stdout.write = process.stderr.write.bind(process.stderr) as typeof stdout.write;
  return (text, cb) => {
    write(text, cb ? () => cb() : undefined);
  };
}

function toErrorMessage(err: unknown, id: string | undefined): ErrorMessage {
  const base = id ? { type: 'error' as const, id } : { type: 'error' as const };
  if (err instanceof EngineError) return { ...base, code: err.code, message: err.message, retryable: err.retryable };
  return { ...base, code: 'ENGINE_FAILED', message: describe(err), retryable: true };
}

function describe(err: unknown): string {
  if (err instanceof Error) return err.message || err.name;
  return typeof err === 'string' ? err : (JSON.stringify(err) ?? String(err));
}

function removeQuietly(path: string): void {
  try {
    rmSync(path, { force: true });
  } catch {
    // best effort: the worker discards outputs of failed jobs anyway
  }
}
