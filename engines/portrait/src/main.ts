/**
 * Process entry of the portrait engine: `node --import tsx engines/portrait/src/main.ts` (from the repo root).
 * Speaks the engine protocol on stdio (docs/engine-protocol.md). Env: PORTRAIT_MIN_SCORE, PORTRAIT_MAX_FACES,
 * PORTRAIT_MAX_FACE_PX, the ESRGAN_* settings for the face model, CLASSIC_THREADS for the background
 * (engines/portrait/README.md). Start-up fails (no `ready`) if the tfjs WASM backend does not start.
 */
import { configureSharp } from '@photoenhance/engine-classic';
import { EngineError, runEngine } from '@photoenhance/engine-protocol';
import { PORTRAIT_CAPABILITIES, PORTRAIT_VERSION, PortraitEngine } from './engine.js';
import { readPortraitSettings } from './settings.js';

let engine: PortraitEngine | undefined;

await runEngine({
  name: 'portrait',
  version: PORTRAIT_VERSION,
  capabilities: PORTRAIT_CAPABILITIES,
  async init() {
    try {
      configureSharp();
      engine = await PortraitEngine.start(readPortraitSettings());
    } catch (err) {
      throw new EngineError('ENGINE_START_FAILED', (err as Error).message, false);
    }
  },
  info: () => engine!.info(),
  handle: (job, ctx) => engine!.handle(job, ctx),
  close: () => engine?.close() ?? Promise.resolve(),
});
