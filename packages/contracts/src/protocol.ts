/**
 * The engine protocol, version 1: JSON lines over stdio between the worker and an engine process.
 * docs/engine-protocol.md is the prose version; keep both in step.
 *
 * stdout carries protocol messages only, one JSON object per line. stderr is free text for logs.
 * Worker → engine on stdin: job, batch (engines that declared batch), cancel, shutdown. Closing stdin means shutdown too.
 * Engine → worker on stdout: ready (once, first), progress, log, done, error, canceled.
 */
import type { ErrorCode } from './errors.js';
import type { JobOptions, OutputFormat } from './options.js';

export const PROTOCOL_VERSION = 1;

export interface EngineCapabilities {
  /** Job options this engine honours; the others are ignored and not reported as applied. */
  options: string[];
  scales: number[];
  formats: OutputFormat[];
}

export interface ReadyMessage {
  type: 'ready';
  protocol: number;
  engine: string;
  version: string;
  capabilities: EngineCapabilities;
  /** Free-form facts for operators: device, models loaded, memory. */
  info?: Record<string, unknown>;
  /**
   * Dynamic batching (optional): the engine takes up to maxBatch jobs in one `batch` request. The worker waits at most
   * maxQueueDelayMs (the operator's profile setting wins) for more jobs before sending a smaller batch. Absent or
   * maxBatch 1: one `job` at a time.
   */
  batch?: BatchCapability;
}

export interface BatchCapability {
  maxBatch: number;
  maxQueueDelayMs?: number;
}

export interface JobRequest {
  type: 'job';
  id: string;
  /** Absolute path of the input image. */
  input: string;
  /** Absolute path the engine must write; its extension matches options.format. */
  output: string;
  options: JobOptions;
}

/** Several jobs at once (only to engines whose ready declared batch.maxBatch ≥ 2); each is answered on its own. */
export interface BatchRequest {
  type: 'batch';
  jobs: Array<Omit<JobRequest, 'type'>>;
}

export interface CancelRequest {
  type: 'cancel';
  id: string;
}

export interface ShutdownRequest {
  type: 'shutdown';
}

export interface ProgressMessage {
  type: 'progress';
  id: string;
  /** 0..1 */
  progress: number;
  stage?: string;
}

export interface LogMessage {
  type: 'log';
  level: 'debug' | 'info' | 'warn' | 'error';
  message: string;
  id?: string;
}

export interface DoneMessage {
  type: 'done';
  id: string;
  output: { width: number; height: number; format: OutputFormat; bytes: number };
  applied: Record<string, unknown>;
  timings?: Record<string, number>;
  meta?: Record<string, unknown>;
}

export interface ErrorMessage {
  type: 'error';
  /** Absent for an error outside any job (e.g. start-up failed). */
  id?: string;
  code: ErrorCode | string;
  message: string;
  retryable?: boolean;
}

export interface CanceledMessage {
  type: 'canceled';
  id: string;
}

export type WorkerToEngine = JobRequest | BatchRequest | CancelRequest | ShutdownRequest;
export type EngineToWorker = ReadyMessage | ProgressMessage | LogMessage | DoneMessage | ErrorMessage | CanceledMessage;

export class ProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProtocolError';
  }
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (o: Record<string, unknown>, k: string): boolean => typeof o[k] === 'string';

/** One protocol line as a JSON object with a string `type`, in either direction; anything else is a ProtocolError. */
export function readProtocolLine(line: string): Record<string, unknown> & { type: string } {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    throw new ProtocolError(`not JSON: ${line.slice(0, 200)}`);
  }
  if (!isObj(v) || typeof v.type !== 'string') throw new ProtocolError(`message without "type": ${line.slice(0, 200)}`);
  return v as Record<string, unknown> & { type: string };
}

/** Parse and check one line an engine wrote. Throws ProtocolError saying what is wrong. */
export function parseEngineMessage(line: string): EngineToWorker {
  const v = readProtocolLine(line);
  switch (v.type) {
    case 'ready':
      if (!str(v, 'engine') || !str(v, 'version') || typeof v.protocol !== 'number' || !isObj(v.capabilities)) {
        throw new ProtocolError('ready needs protocol (number), engine, version (strings) and capabilities (object)');
      }
      return v as unknown as ReadyMessage;
    case 'progress':
      if (!str(v, 'id') || typeof v.progress !== 'number' || !(v.progress >= 0 && v.progress <= 1)) {
        throw new ProtocolError('progress needs id and progress between 0 and 1');
      }
      return v as unknown as ProgressMessage;
    case 'log':
      if (!str(v, 'message')) throw new ProtocolError('log needs message');
      return { level: 'info', ...v } as unknown as LogMessage;
    case 'done':
      if (!str(v, 'id') || !isObj(v.output)) throw new ProtocolError('done needs id and output');
      return { applied: {}, ...v } as unknown as DoneMessage;
    case 'error':
      if (!str(v, 'code') || !str(v, 'message')) throw new ProtocolError('error needs code and message');
      return v as unknown as ErrorMessage;
    case 'canceled':
      if (!str(v, 'id')) throw new ProtocolError('canceled needs id');
      return v as unknown as CanceledMessage;
    default:
      throw new ProtocolError(`unknown message type ${JSON.stringify(v.type)}`);
  }
}

export function encodeMessage(msg: WorkerToEngine | EngineToWorker): string {
  return `${JSON.stringify(msg)}\n`;
}
