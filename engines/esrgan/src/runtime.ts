/**
 * The TensorFlow.js runtime for the ESRGAN engine: tfjs 4.11 on the WASM backend, with models read from node_modules.
 *
 * Why not `upscaler/node`: it needs @tensorflow/tfjs-node, whose install downloads a native library and fails offline.
 * So the upscaler is assembled from the package's own platform-neutral pieces (its CommonJS `shared` code and the
 * node model/argument helpers, which take `tf` as a parameter), and `file://` model URLs are served by a load router
 * registered here (plain tfjs has no file system handler).
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type * as TF from '@tensorflow/tfjs';

const require = createRequire(import.meta.url);

export type Tf = typeof TF;

/** The WASM backend's module (CommonJS, node build). */
interface WasmBackendModule {
  setThreadsCount(n: number): void;
  setWasmPaths(prefixOrFileMap: string | Record<string, string>, usePlatformFetch?: boolean): void;
  version_wasm: string;
}

export interface RuntimeOptions {
  /** Folder holding tfjs-backend-wasm's .wasm files (ESRGAN_WASM_PATH). Default: the ones in node_modules. */
  wasmPath?: string;
}

export interface Runtime {
  tf: Tf;
  backend: 'wasm';
  simd: boolean;
  tfjsVersion: string;
}

let runtime: Promise<Runtime> | undefined;

/** tfjs on WASM, once per process. Throws (never falls back) if the WASM backend did not start. */
export function startRuntime(opts: RuntimeOptions = {}): Promise<Runtime> {
  runtime ??= (async () => {
    const tf = require('@tensorflow/tfjs') as Tf;
    const wasm = require('@tensorflow/tfjs-backend-wasm') as WasmBackendModule;
    if (opts.wasmPath) {
      // usePlatformFetch: false → the node build reads the file from disk at this prefix.
      wasm.setWasmPaths(opts.wasmPath.endsWith('/') ? opts.wasmPath : `${opts.wasmPath}/`);
    }
    registerFileLoader(tf);
    // tfjs logs backend failures with console.warn: runEngine already points console at stderr.
    let ok = false;
    let why = '';
    try {
      ok = await tf.setBackend('wasm');
      await tf.ready();
    } catch (err) {
      why = (err as Error).message;
    }
    const backend = tf.getBackend();
    if (!ok || backend !== 'wasm') {
      throw new Error(
        `the tfjs WASM backend did not start (tf.getBackend() is ${JSON.stringify(backend)}${why ? `: ${why}` : ''}); ` +
          'refusing to run ~20x slower on the CPU backend. Check that @tensorflow/tfjs-backend-wasm@4.11.0 is installed ' +
          `and its .wasm files are readable${opts.wasmPath ? ` under ESRGAN_WASM_PATH=${opts.wasmPath}` : ''}`,
      );
    }
    const simd = Boolean(await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT'));
    return { tf, backend: 'wasm' as const, simd, tfjsVersion: tf.version.tfjs };
  })();
  runtime.catch(() => {
    runtime = undefined;
  });
  return runtime;
}

interface ModelJson {
  modelTopology: unknown;
  format?: string;
  generatedBy?: string;
  convertedBy?: string | null;
  weightsManifest: Array<{ paths: string[]; weights: TF.io.WeightsManifestEntry[] }>;
}

/** Serve `file:///abs/model.json` (and its weight shards beside it) to tf.loadLayersModel / loadGraphModel. */
function registerFileLoader(tf: Tf): void {
  // A router answers null for URLs that are not its own (the declared type omits that).
  tf.io.registerLoadRouter(((url: string | string[]) => {
    if (typeof url !== 'string' || !url.startsWith('file://')) return null;
    const path = decodeURIComponent(url.slice('file://'.length));
    return {
      async load(): Promise<TF.io.ModelArtifacts> {
        const json = JSON.parse(readFileSync(path, 'utf8')) as ModelJson;
        const dir = dirname(path);
        const specs: TF.io.WeightsManifestEntry[] = [];
        const shards: Buffer[] = [];
        for (const group of json.weightsManifest) {
          specs.push(...group.weights);
          for (const p of group.paths) shards.push(readFileSync(join(dir, p)));
        }
        const all = Buffer.concat(shards);
        return {
          modelTopology: json.modelTopology as TF.io.ModelArtifacts['modelTopology'],
          ...(json.format ? { format: json.format } : {}),
          ...(json.generatedBy ? { generatedBy: json.generatedBy } : {}),
          ...(json.convertedBy ? { convertedBy: json.convertedBy } : {}),
          weightSpecs: specs,
          weightData: all.buffer.slice(all.byteOffset, all.byteOffset + all.length),
        };
      },
    };
  }) as unknown as Parameters<Tf['io']['registerLoadRouter']>[0]);
}
