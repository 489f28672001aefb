import { readSettings as readEsrganSettings, type EsrganSettings } from '@photoenhance/engine-esrgan';

/** Portrait settings from the environment (plus the ESRGAN_* ones for the face model), validated at start-up. */
export interface PortraitSettings {
  esrgan: EsrganSettings;
  /** PORTRAIT_MIN_SCORE: detector confidence needed to restore a face, 0.1..0.99 (default 0.5). */
  minScore: number;
  /** PORTRAIT_MAX_FACES: at most this many faces a photo, best first, 1..100 (default 20). */
  maxFaces: number;
  /**
   * PORTRAIT_MAX_FACE_PX: a face region longer than this (input px) is shrunk to it before ESRGAN, 64..2048 (default
   * 384). Bounds the time of close-ups; a large face needs less super-resolution anyway.
   */
  maxFacePx: number;
}

function num(env: NodeJS.ProcessEnv, name: string, def: number, min: number, max: number, integer: boolean): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return def;
  const n = Number(raw);
  if (!Number.isFinite(n) || (integer && !Number.isInteger(n)) || n < min || n > max) {
    throw new Error(`${name} must be ${integer ? 'an integer' : 'a number'} from ${min} to ${max}; received ${JSON.stringify(raw)}`);
  }
  return n;
}

export function readPortraitSettings(env: NodeJS.ProcessEnv = process.env): PortraitSettings {
  return {
    esrgan: readEsrganSettings(env),
    minScore: num(env, 'PORTRAIT_MIN_SCORE', 0.5, 0.1, 0.99, false),
    maxFaces: num(env, 'PORTRAIT_MAX_FACES', 20, 1, 100, true),
    maxFacePx: num(env, 'PORTRAIT_MAX_FACE_PX', 384, 64, 2048, true),
  };
}
