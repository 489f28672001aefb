/** The portrait engine's pieces, for reuse and tests. The process entry is src/main.ts. */
export { PORTRAIT_CAPABILITIES, PORTRAIT_VERSION, PortraitEngine } from './engine.js';
export { FACE_MARGIN, faceRegion, featherMask, matchColour, overlay, type Region } from './blend.js';
export { FaceDetector, type FaceBox } from './detect.js';
export { readPortraitSettings, type PortraitSettings } from './settings.js';
