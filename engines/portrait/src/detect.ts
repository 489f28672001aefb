/**
 * Face detection with @vladmandic/face-api (MIT), whose SSD MobileNet v1 detector ships in the npm package (model/).
 * Its `node-wasm` build requires plain @tensorflow/tfjs + @tensorflow/tfjs-backend-wasm, so it shares the ESRGAN
 * engine's tfjs 4.11 runtime and WASM backend in the same process (one tfjs, one WASM heap).
 * Detection runs on a copy at most DETECT_MAX_SIDE px long (the SSD looks at 512×512 anyway): fast, bounded memory.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { RgbImage, Tf } from '@photoenhance/engine-esrgan';
import sharp from 'sharp';

const require = createRequire(import.meta.url);

const DETECT_MAX_SIDE = 800;

export interface FaceBox {
  x: number;
  y: number;
  width: number;
  height: number;
  score: number;
}

interface FaceApi {
  nets: { ssdMobilenetv1: { loadFromDisk(dir: string): Promise<void>; isLoaded: boolean } };
  SsdMobilenetv1Options: new (o: { minConfidence: number; maxResults: number }) => unknown;
  detectAllFaces(
    input: unknown,
    options: unknown,
  ): Promise<Array<{ score: number; box: { x: number; y: number; width: number; height: number } }>>;
}

export class FaceDetector {
  private constructor(
    private readonly tf: Tf,
    private readonly api: FaceApi,
    readonly minScore: number,
  ) {}

  /** Load the detector weights from the face-api package (5.4 MB). Needs the WASM backend already set. */
  static async load(tf: Tf, minScore: number): Promise<FaceDetector> {
    const api = require('@vladmandic/face-api/dist/face-api.node-wasm.js') as FaceApi;
    const modelDir = join(dirname(require.resolve('@vladmandic/face-api/dist/face-api.node-wasm.js')), '../model');
    await api.nets.ssdMobilenetv1.loadFromDisk(modelDir);
    return new FaceDetector(tf, api, minScore);
  }

  /** Faces in `img`, in its pixel coordinates, best first. */
  async detect(img: RgbImage, maxResults: number): Promise<FaceBox[]> {
    const k = Math.min(1, DETECT_MAX_SIDE / Math.max(img.width, img.height));
    let small = img;
    if (k < 1) {
      const width = Math.max(1, Math.round(img.width * k));
      const height = Math.max(1, Math.round(img.height * k));
      const data = await sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } })
        .resize(width, height, { kernel: 'linear' })
        .raw()
        .toBuffer();
      small = { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width, height };
    }
    const input = this.tf.tensor3d(Int32Array.from(small.data), [small.height, small.width, 3], 'int32');
    try {
      const found = await this.api.detectAllFaces(input, new this.api.SsdMobilenetv1Options({ minConfidence: this.minScore, maxResults }));
      const sx = img.width / small.width;
      const sy = img.height / small.height;
      return found
        .map((d) => ({ x: d.box.x * sx, y: d.box.y * sy, width: d.box.width * sx, height: d.box.height * sy, score: d.score }))
        .sort((a, b) => b.score - a.score);
    } finally {
      input.dispose();
    }
  }
}
