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
} from '@photoenhance/contracts';
import { EngineError } from './engine-error.js';
import { DEFAULT_MAX_LINE_BYTES, readLines } from './line-decoder.js';
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

interface CurrentJob {
  id: string;
  output: string;
  controller: AbortController;
  canceled: boolean;
}

let running = false;

/**
 * Turn a handler into an engine process speaking the engine protocol (docs/engine-protocol.md) on stdin/stdout.
 * Never returns: the process exits 0 after `shutdown` (once the current job is answered), at once when stdin closes
 * without a `shutdown` (the worker is gone: the current job is abandoned and its partial output removed), promptly on
 * SIGTERM/SIGINT, and 1 if `init` fails or an exception escapes.
 */
export function runEngine(def: EngineDefinition, opts: RunEngineOptions = {}): Promise<never> {
  if (running) throw new Error('runEngine may be called once per process');
  running = true;
  const protocolWrite = claimStdout();

  let state: 'starting' | 'ready' | 'stopping' = 'starting';
  let current: CurrentJob | undefined;
  let shutdownRequested = false;
  let exiting = false;

  const send = (msg: EngineToWorker): void => {
    protocolWrite(encodeMessage(msg));
  };
  const log = (level: LogLevel, message: string, id?: string): void => {
    send({ type: 'log', level: LOG_LEVELS.has(level) ? level : 'info', message: String(message), ...(id ? { id } : {}) });
  };

  const exit = (code: number): void => {
    if (exiting) return;
    exiting = true;
    // stdout to a pipe is synchronous on Linux; the callback also covers other platforms. The timer is a backstop
    // for a reader that stopped reading.
    const timer = setTimeout(() => process.exit(code), 2000);
    protocolWrite('', () => {
      clearTimeout(timer);
      process.exit(code);
    });
  };

  const finish = async (): Promise<void> => {
    if (exiting || state === 'stopping') return;
    state = 'stopping';
    try {
      await def.close?.();
    } catch (err) {
      process.stderr.write(`[${def.name}] close failed: ${describe(err)}\n`);
    }
    exit(0);
  };

  const requestShutdown = (): void => {
    shutdownRequested = true;
    if (state === 'starting') exit(0);
    else if (!current) void finish();
    // else: runJob calls finish() once the current job is answered.
  };

  const terminate = (): void => {
    const job = current;
    if (job) {
      job.canceled = true;
      job.controller.abort(new EngineError('JOB_CANCELED', 'the engine process is stopping', true));
      removeQuietly(job.output);
      send({ type: 'canceled', id: job.id });
    }
    exit(0);
  };

  const runJob = async (job: JobRequest): Promise<void> => {
    const cur: CurrentJob = { id: job.id, output: job.output, controller: new AbortController(), canceled: false };
    current = cur;
    const started = performance.now();
    const ctx: EngineContext = {
      signal: cur.controller.signal,
      progress(p, stage) {
        if (current !== cur || cur.controller.signal.aborted || !Number.isFinite(p)) return;
        const progress = Math.round(Math.min(1, Math.max(0, p)) * 10_000) / 10_000;
        send({ type: 'progress', id: cur.id, progress, ...(stage ? { stage } : {}) });
      },
      log(level, message) {
        if (current === cur) log(level, message, cur.id);
      },
    };
    let reply: EngineToWorker;
    try {
      const result = await def.handle(job, ctx);
      if (cur.canceled) reply = { type: 'canceled', id: cur.id };
      else if (!result || typeof result !== 'object' || typeof result.output !== 'object' || result.output === null) {
        reply = { type: 'error', id: cur.id, code: 'ENGINE_FAILED', message: 'the engine handler returned no output description', retryable: true };
      } else {
        const totalMs = Math.round(performance.now() - started);
        reply = {
          type: 'done',
          id: cur.id,
          output: result.output,
          applied: result.applied ?? {},
          timings: { totalMs, ...result.timings },
          ...(result.meta ? { meta: result.meta } : {}),
        };
      }
    } catch (err) {
      reply = cur.canceled ? { type: 'canceled', id: cur.id } : toErrorMessage(err, cur.id);
    }
    if (exiting) return; // SIGTERM already answered this job
    if (reply.type !== 'done') removeQuietly(cur.output);
    current = undefined;
    send(reply);
    if (shutdownRequested) void finish();
  };

  const onMessageLine = (line: string): void => {
    if (exiting) return;
    let msg;
    try {
      msg = parseWorkerMessage(line);
    } catch (err) {
      const id = protocolErrorId(err);
      send({ type: 'error', ...(id ? { id } : {}), code: 'ENGINE_PROTOCOL_ERROR', message: `rejected a message: ${describe(err)}`, retryable: false });
      return;
    }
    switch (msg.type) {
      case 'job': {
        const refuse = state === 'starting' ? 'not ready yet; wait for "ready"'
          : state === 'stopping' || shutdownRequested ? 'shutting down'
          : current ? `busy with job ${current.id}; send one job at a time`
          : undefined;
        if (refuse) {
          send({ type: 'error', id: msg.id, code: 'ENGINE_PROTOCOL_ERROR', message: `job refused: ${refuse}`, retryable: true });
          return;
        }
        void runJob(msg);
        return;
      }
      case 'cancel': {
        const job = current;
        if (job && job.id === msg.id) {
          if (!job.canceled) {
            job.canceled = true;
            job.controller.abort(new EngineError('JOB_CANCELED', 'canceled by the worker', false));
          }
        } else {
          log('debug', `cancel for ${msg.id} ignored: it is not running`);
        }
        return;
      }
      case 'shutdown':
        requestShutdown();
        return;
    }
  };

  readLines(process.stdin, onMessageLine, {
    maxLineBytes: opts.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES,
    onOverflow: ({ head, bytes }) => {
      send({ type: 'error', code: 'ENGINE_PROTOCOL_ERROR', message: `dropped a line over ${bytes} bytes (limit ${opts.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES}): ${head.slice(0, 80)}`, retryable: false });
    },
    // EOF after `shutdown` is the graceful goodbye. EOF without it means the worker died (or dropped us): nobody will
    // commit this job's result, so stop at once instead of computing and writing on as an orphan.
    onEnd: () => (shutdownRequested ? requestShutdown() : terminate()),
  });
  process.stdin.on('error', terminate);
  // The worker is gone: nobody can read our answers any more.
  process.stdout.on('error', () => exit(0));
  process.once('SIGTERM', terminate);
  process.once('SIGINT', terminate);
  process.on('uncaughtException', (err) => {
    process.stderr.write(`[${def.name}] uncaught exception: ${err.stack ?? describe(err)}\n`);
    send({ type: 'error', ...(current ? { id: current.id } : {}), code: 'ENGINE_FAILED', message: `uncaught exception: ${describe(err)}`, retryable: true });
    exit(1);
  });
  process.on('unhandledRejection', (reason) => {
    process.stderr.write(`[${def.name}] unhandled rejection: ${reason instanceof Error ? reason.stack : describe(reason)}\n`);
    send({ type: 'error', ...(current ? { id: current.id } : {}), code: 'ENGINE_FAILED', message: `unhandled rejection: ${describe(reason)}`, retryable: true });
    exit(1);
  });

  void (async () => {
    try {
      await def.init?.({ log: (level, message) => log(level, message) });
      const info = typeof def.info === 'function' ? await def.info() : def.info;
      if (exiting) return;
      state = 'ready';
      send({
        type: 'ready',
        protocol: PROTOCOL_VERSION,
        engine: def.name,
        version: def.version,
        capabilities: def.capabilities,
        ...(info ? { info } : {}),
      });
      if (shutdownRequested) void finish();
    } catch (err) {
      if (exiting) return;
      const e = toErrorMessage(err, undefined);
      send({ ...e, code: err instanceof EngineError ? err.code : 'ENGINE_START_FAILED', message: `start-up failed: ${e.message}` });
      exit(1);
    }
  })();

  return new Promise<never>(() => {});
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
  return typeof err === 'string' ? err : JSON.stringify(err) ?? String(err);
}

function removeQuietly(path: string): void {
  try {
    rmSync(path, { force: true });
  } catch {
    // best effort: the worker discards outputs of failed jobs anyway
  }
}
