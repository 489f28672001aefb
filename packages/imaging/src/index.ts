export { BMP_HEADER_BYTES, BmpError, bmpDimensions, decodeBmp, encodeBmp24, inspectBmp, isBmp, type RawImage } from './bmp.js';
