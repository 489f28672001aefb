import { MODEL_SIZES, type ModelSize } from './models.js';

/** Engine settings from the environment, validated once at start-up. */
export interface EsrganSettings {
  /** ESRGAN_MODEL: slim (default; fastest) or medium (sharper, ~3x slower, ~2x the memory). */
  model: ModelSize;
  /** ESRGAN_TILE: input tile edge in px, 32..256 (default 128). Larger tiles: less padding overhead, more memory. */
  tile: number;
  /** ESRGAN_TILE_PAD: context px around each tile, 0..64 (default 8). */
  pad: number;
  /** ESRGAN_WASM_PATH: folder with tfjs-backend-wasm's .wasm files (default: node_modules). */
  wasmPath?: string;
}

function int(env: NodeJS.ProcessEnv, name: string, def: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return def;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new Error(`${name} must be an integer from ${min} to ${max}; received ${JSON.stringify(raw)}`);
  return n;
}

export function readSettings(env: NodeJS.ProcessEnv = process.env): EsrganSettings {
  const model = (env.ESRGAN_MODEL?.trim() || 'slim') as ModelSize;
  if (!MODEL_SIZES.includes(model))
    throw new Error(`ESRGAN_MODEL must be one of ${MODEL_SIZES.join(', ')}; received ${JSON.stringify(env.ESRGAN_MODEL)}`);
  const wasmPath = env.ESRGAN_WASM_PATH?.trim();
  return {
    model,
    tile: int(env, 'ESRGAN_TILE', 128, 32, 256),
    pad: int(env, 'ESRGAN_TILE_PAD', 8, 0, 64),
    ...(wasmPath ? { wasmPath } : {}),
  };
}
