/** The classic engine's pipeline, for reuse and tests. The process entry is src/main.ts. */
export { CLASSIC_CAPABILITIES, enhance, prepare, wantedSteps, type Prepared, type Steps } from './enhance.js';
export { estimateNoise, lumaPlane, NOISE_THRESHOLD, sharpenDetail, type Levels } from './filters.js';
export { configureSharp, type SharpSettings } from './sharp-settings.js';
export { decodeBmp, encodeBmp24, isBmp, BmpError, type RawImage } from '@photoenhance/imaging';
export { decodeFailure, openInput } from './input.js';
export { lanczos3, upscaleLanczos, type Pixels } from './upscale.js';
