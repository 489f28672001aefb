/**
 * @photoenhance/engine-protocol — the engine protocol at run time.
 * Engines: `runEngine({ name, version, capabilities, init, handle })` and `EngineError`.
 * Worker side: `LineDecoder` / `readLines` for engine stdout, `parseEngineMessage` and `encodeMessage` (from contracts).
 * Message shapes live in @photoenhance/contracts (protocol.ts); the prose is docs/engine-protocol.md.
 */
export { LineDecoder, readLines, DEFAULT_MAX_LINE_BYTES, type LineDecoderOptions } from './line-decoder.js';
export { parseWorkerMessage, protocolErrorId } from './worker-messages.js';
export { EngineError, abortError } from './engine-error.js';
export { stages, type Stages } from './stages.js';
export {
  runEngine,
  type EngineContext,
  type EngineDefinition,
  type EngineResult,
  type LogLevel,
  type RunEngineOptions,
} from './run-engine.js';
export { PROTOCOL_VERSION, ProtocolError, encodeMessage, parseEngineMessage } from '@photoenhance/contracts';
export type {
  CancelRequest,
  CanceledMessage,
  DoneMessage,
  EngineCapabilities,
  EngineToWorker,
  ErrorMessage,
  JobRequest,
  LogMessage,
  ProgressMessage,
  ReadyMessage,
  ShutdownRequest,
  WorkerToEngine,
} from '@photoenhance/contracts';
