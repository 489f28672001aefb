/** The esrgan engine's pieces, for reuse (the portrait engine) and tests. The process entry is src/main.ts. */
export { ESRGAN_CAPABILITIES, ESRGAN_VERSION, EsrganEngine } from './engine.js';
export { decodeInput, encodeOutput, resizeAlpha, withAlpha, type DecodedImage } from './image-io.js';
export { MODEL_SIZES, ModelCache, modelDefinition, modelPackageDir, type Factor, type ModelSize, type UpscalerLike } from './models.js';
export { startRuntime, type Runtime, type Tf } from './runtime.js';
export { readSettings, type EsrganSettings } from './settings.js';
export { planTiles, type Tile } from './tiles.js';
export { upscaleRgb, type RgbImage, type TileSettings, type UpscaleHooks } from './upscale.js';
