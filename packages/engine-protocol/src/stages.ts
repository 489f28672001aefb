import { abortError } from './engine-error.js';
import type { EngineContext } from './run-engine.js';

export interface Stages {
  /** Report progress at the start of a stage; throws the abort error when the job was canceled meanwhile. */
  step(progress: number, stage: string): void;
  /** Record how long the stage since the last lap took, as `timings[<name>Ms]`. */
  lap(name: string): void;
  readonly timings: Record<string, number>;
}

/** For engines that work in stages: real progress, cancel honoured between stages, and per-stage timings. */
export function stages(ctx: EngineContext): Stages {
  const timings: Record<string, number> = {};
  let t = performance.now();
  return {
    timings,
    step(progress, stage) {
      if (ctx.signal.aborted) throw abortError();
      ctx.progress(progress, stage);
    },
    lap(name) {
      const now = performance.now();
      timings[`${name}Ms`] = Math.round(now - t);
      t = now;
    },
  };
}
