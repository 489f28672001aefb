export { BMP_HEADER_BYTES, BmpError, bmpDimensions, decodeBmp, encodeBmp24, inspectBmp, isBmp, type RawImage } from './bmp.js';
export {
  StructureError,
  bufferReader,
  checkFileStructure,
  checkStructure,
  exifOrientation,
  type ByteReader,
  type Dimensions,
  type StructuralFormat,
  type StructureOptions,
} from './structure.js';
