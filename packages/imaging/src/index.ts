export { BmpError, bmpDimensions, decodeBmp, encodeBmp24, isBmp, type RawImage } from './bmp.js';
