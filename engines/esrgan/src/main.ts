/**
 * Process entry of the esrgan engine: `node --import tsx engines/esrgan/src/main.ts` (from the repo root).
 * Speaks the engine protocol on stdio (docs/engine-protocol.md). Env: ESRGAN_MODEL (slim|medium), ESRGAN_TILE,
 * ESRGAN_TILE_PAD, ESRGAN_WASM_PATH (engines/esrgan/README.md). Start-up fails (no `ready`) if the tfjs WASM backend
 * does not start: it never runs on the ~20x slower CPU backend.
 */
import sharp from 'sharp';
import { EngineError, runEngine } from '@photoenhance/engine-protocol';
import { ESRGAN_CAPABILITIES, ESRGAN_VERSION, EsrganEngine } from './engine.js';
import { readSettings } from './settings.js';

let engine: EsrganEngine | undefined;
sharp.cache(false);
sharp.concurrency(1);

await runEngine({
  name: 'esrgan',
  version: ESRGAN_VERSION,
  capabilities: ESRGAN_CAPABILITIES,
  async init() {
    try {
      engine = await EsrganEngine.start(readSettings());
    } catch (err) {
      throw new EngineError('ENGINE_START_FAILED', (err as Error).message, false);
    }
  },
  info: () => engine!.info(),
  handle: (job, ctx) => engine!.handle(job, ctx),
  close: () => engine?.close() ?? Promise.resolve(),
});
