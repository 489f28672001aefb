/**
 * engines/gfpgan/photoenhance_gfpgan.py, the resident GFPGAN engine, run for real over stdio and spoken to in the
 * engine protocol. The GFPGAN stack (torch, basicsr, facexlib, gfpgan, realesrgan) cannot be installed on the CI
 * machine, so PYTHONPATH points at a test double of those packages (test/fixtures/gfpgan-double) that keeps their
 * public signatures, does real image operations with numpy/cv2, and can be told to run out of GPU memory, find no
 * face, allocate memory or run slowly. Model files are empty placeholders. The real models are not run here.
 *
 * Needs a python3 with numpy and cv2 (Debian: apt-get install -y python3-numpy python3-opencv); without one the
 * suite is skipped with a message saying so.
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  encodeMessage,
  parseEngineMessage,
  type CanceledMessage,
  type DoneMessage,
  type EngineToWorker,
  type ErrorMessage,
  type JobOptions,
  type LogMessage,
  type ReadyMessage,
  type WorkerToEngine,
} from '@photoenhance/contracts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const ADAPTER = join(ROOT, 'engines/gfpgan/photoenhance_gfpgan.py');
const DOUBLE = join(ROOT, 'test/fixtures/gfpgan-double');
const SAMPLE = join(ROOT, 'node_modules/@vladmandic/face-api/demo/sample1.jpg');
const DEADLINE_MS = 30_000;

function findPython(): string | undefined {
  const candidates = [process.env.GFPGAN_TEST_PYTHON, '/usr/bin/python3', 'python3'].filter((c): c is string => !!c);
  for (const c of candidates) {
    const r = spawnSync(c, ['-c', 'import numpy, cv2'], { encoding: 'utf8' });
    if (r.status === 0) return c;
  }
  return undefined;
}

const PYTHON = findPython();
if (!PYTHON) {
  console.warn(
    'gfpgan-adapter tests SKIPPED: no python3 with numpy and cv2 found (tried $GFPGAN_TEST_PYTHON, /usr/bin/python3, python3). ' +
      'On Debian: apt-get install -y --no-install-recommends python3-numpy python3-opencv',
  );
}

const MODEL_FILES = [
  'GFPGANv1.pth',
  'GFPGANCleanv1-NoCE-C2.pth',
  'GFPGANv1.3.pth',
  'GFPGANv1.4.pth',
  'RestoreFormer.pth',
  'RealESRGAN_x2plus.pth',
  'gfpgan/weights/detection_Resnet50_Final.pth',
  'gfpgan/weights/parsing_parsenet.pth',
];

type Result = DoneMessage | ErrorMessage | CanceledMessage;

/** One engine process, spoken to over its real stdin/stdout. */
class Engine {
  readonly child: ChildProcessWithoutNullStreams;
  readonly messages: EngineToWorker[] = [];
  readonly protocolErrors: string[] = [];
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  private wake: Array<() => void> = [];

  constructor(args: string[], env: Record<string, string> = {}) {
    const base: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('GFPGAN_DOUBLE_')) base[k] = v;
    this.child = spawn(PYTHON!, [ADAPTER, ...args], {
      env: { ...base, PYTHONPATH: DOUBLE, PYTHONDONTWRITEBYTECODE: '1', ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.child.stderr.setEncoding('utf8');
    this.child.stderr.on('data', (d: string) => {
      this.stderr += d;
    });
    createInterface({ input: this.child.stdout }).on('line', (line) => {
      try {
        this.messages.push(parseEngineMessage(line));
      } catch (err) {
        this.protocolErrors.push(`${(err as Error).message} <- ${line.slice(0, 200)}`);
      }
      this.notify();
    });
    this.exited = new Promise((res) => {
      this.child.on('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        this.notify();
        res({ code, signal });
      });
    });
    this.child.stdin.on('error', () => undefined); // EPIPE after the engine exits
  }

  private notify(): void {
    const w = this.wake;
    this.wake = [];
    for (const f of w) f();
  }

  send(...msgs: WorkerToEngine[]): void {
    this.child.stdin.write(msgs.map((m) => encodeMessage(m)).join(''));
  }

  /** The first message (from the start) matching `pred`, waiting for it until a deadline. */
  async waitFor<T extends EngineToWorker>(pred: (m: EngineToWorker) => boolean, what: string, timeoutMs = DEADLINE_MS): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.messages.find(pred);
      if (hit) return hit as T;
      if (this.exitInfo)
        throw new Error(`engine exited (${JSON.stringify(this.exitInfo)}) before ${what}; stderr:\n${this.stderr.slice(-3000)}`);
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(
          `no ${what} within ${timeoutMs} ms; messages: ${JSON.stringify(this.messages).slice(-2000)}; stderr:\n${this.stderr.slice(-3000)}`,
        );
      await new Promise<void>((res) => {
        const t = setTimeout(res, left);
        this.wake.push(() => {
          clearTimeout(t);
          res();
        });
      });
    }
  }

  ready(): Promise<ReadyMessage> {
    return this.waitFor<ReadyMessage>((m) => m.type === 'ready', 'ready');
  }

  result(id: string, timeoutMs = DEADLINE_MS): Promise<Result> {
    return this.waitFor<Result>(
      (m) => (m.type === 'done' || m.type === 'error' || m.type === 'canceled') && m.id === id,
      `result of ${id}`,
      timeoutMs,
    );
  }

  async done(id: string, timeoutMs = DEADLINE_MS): Promise<DoneMessage> {
    const r = await this.result(id, timeoutMs);
    if (r.type !== 'done') throw new Error(`job ${id} did not succeed: ${JSON.stringify(r)}\nstderr:\n${this.stderr.slice(-3000)}`);
    return r;
  }

  async exit(timeoutMs = DEADLINE_MS): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    let t: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, rej) => {
      t = setTimeout(() => rej(new Error(`engine did not exit within ${timeoutMs} ms; stderr:\n${this.stderr.slice(-2000)}`)), timeoutMs);
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(t);
    }
  }

  async stop(): Promise<void> {
    if (this.exitInfo) return;
    this.send({ type: 'shutdown' });
    try {
      await this.exit(10_000);
    } catch {
      this.child.kill('SIGKILL');
      await this.exited;
    }
  }
}

const engines: Engine[] = [];
let work = '';
let models = '';
let n = 0;
const inputs = { big: SAMPLE, small: '', png: '', aligned: '', truncated: '', garbage: '', w962: '' };

function makeModelDir(name: string, skip: string[] = []): string {
  const dir = join(work, name);
  for (const f of MODEL_FILES) {
    if (skip.includes(f)) continue;
    mkdirSync(dirname(join(dir, f)), { recursive: true });
    writeFileSync(join(dir, f), '');
  }
  return dir;
}

function start(args: string[] = [], env: Record<string, string> = {}, modelDir = models): Engine {
  const e = new Engine(['--model-dir', modelDir, ...args], env);
  engines.push(e);
  return e;
}

const CUDA = { GFPGAN_DOUBLE_CUDA: '1' };

/** What the torch double's empty_cache() reported: GPU bytes still held by live tensors at each call. */
function emptyCacheLive(stderr: string): number[] {
  return [
    ...stderr.matchAll(/torch\.cuda\.empty_cache\(\) call \d+: returned \d+ bytes to the driver; (\d+) bytes still held by live tensors/g),
  ].map((m) => Number(m[1]));
}

const DOWNLOAD_CALLED = 'torch.hub.download_url_to_file CALLED';

function job(input: string, options: Partial<JobOptions> = {}): WorkerToEngine & { type: 'job' } {
  const format = options.format ?? 'png';
  const id = `job-${++n}`;
  const ext = format === 'jpeg' ? 'jpg' : format;
  return {
    type: 'job',
    id,
    input,
    output: join(work, 'out', `${id}.${ext}`),
    options: {
      scale: 2,
      version: '1.4',
      weight: 0.5,
      onlyCenterFace: false,
      aligned: false,
      bgUpsampler: 'realesrgan',
      bgTile: 400,
      format,
      quality: 92,
      priority: 'normal',
      ...options,
    },
  };
}

describe.skipIf(!PYTHON)('gfpgan adapter (against the test double of gfpgan/basicsr/facexlib/realesrgan/torch)', () => {
  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'pe-gfpgan-'));
    mkdirSync(join(work, 'out'));
    models = makeModelDir('models');
    inputs.small = join(work, 'small.jpg');
    await sharp(SAMPLE).resize({ width: 640 }).jpeg({ quality: 90 }).toFile(inputs.small);
    inputs.w962 = join(work, 'w962.jpg');
    await sharp(SAMPLE).resize({ width: 962 }).jpeg({ quality: 90 }).toFile(inputs.w962);
    inputs.png = join(work, 'small.png');
    await sharp(SAMPLE).resize({ width: 320 }).png().toFile(inputs.png);
    inputs.aligned = join(work, 'aligned.png');
    await sharp(SAMPLE).extract({ left: 800, top: 200, width: 512, height: 512 }).png().toFile(inputs.aligned);
    const bytes = readFileSync(inputs.small);
    inputs.truncated = join(work, 'truncated.jpg');
    writeFileSync(inputs.truncated, bytes.subarray(0, Math.floor(bytes.length * 0.6)));
    inputs.garbage = join(work, 'garbage.jpg');
    writeFileSync(inputs.garbage, Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(4000, 7), Buffer.from([0xff, 0xd9])]));
  });

  afterEach(async () => {
    const running = engines.splice(0);
    for (const e of running) {
      await e.stop();
      // stdout carried protocol messages only, although the doubles print tile progress to stdout like Real-ESRGAN
      expect(e.protocolErrors).toEqual([]);
    }
  });

  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('reports device, GPU, loaded versions and memory in ready; a real photo at scale 2 comes back 2x', async () => {
    const e = start([], { ...CUDA, GFPGAN_DOUBLE_ALLOC_MB: '96' });
    const ready = await e.ready();
    expect(e.messages[0]?.type).toBe('ready');
    expect(ready).toMatchObject({ protocol: 1, engine: 'gfpgan', capabilities: { scales: [1, 2, 4], formats: ['png', 'jpeg', 'webp'] } });
    expect(ready.capabilities.options).toEqual(
      expect.arrayContaining(['scale', 'version', 'weight', 'onlyCenterFace', 'aligned', 'bgUpsampler', 'bgTile', 'format', 'quality']),
    );
    // gfpgan and realesrgan export no __version__: the versions come from the package metadata
    expect(ready.version).toBe('1.3.8+testdouble');
    const info = ready.info as { packages: Record<string, string>; memory: Record<string, number> };
    expect(info.packages).toEqual({
      torch: '2.6.0+testdouble',
      basicsr: '1.4.2+testdouble',
      facexlib: '0.3.0+testdouble',
      gfpgan: '1.3.8+testdouble',
      realesrgan: '0.3.0+testdouble',
    });
    expect(info).toMatchObject({
      device: 'cuda',
      gpuName: 'NVIDIA Test Double GPU',
      half: true,
      bgUpsampler: 'realesrgan',
      versionsLoaded: ['1.4'],
      maxModels: 1,
    });
    expect(info.memory.rssBytes).toBeGreaterThan(96 * 2 ** 20);
    expect(info.memory.gpuTotalBytes).toBe(16384 * 2 ** 20);
    expect(info.memory.gpuAllocatedBytes).toBeGreaterThan(0);
    // constructed as GFPGAN's inference_gfpgan.py does
    expect(e.stderr).toContain(
      `GFPGANer(model_path='${join(models, 'GFPGANv1.4.pth')}', upscale=2, arch='clean', channel_multiplier=2, bg_upsampler=RealESRGANer, device=cuda)`,
    );
    expect(e.stderr).toContain(
      `RealESRGANer(scale=2, model_path='${join(models, 'RealESRGAN_x2plus.pth')}', tile=400, tile_pad=10, pre_pad=0, half=True, device=cuda)`,
    );

    const j = job(inputs.big, { scale: 2, format: 'png' });
    e.send(j);
    const done = await e.done(j.id, 60_000);
    const src = await sharp(SAMPLE).metadata();
    const out = await sharp(j.output).metadata();
    expect(out.format).toBe('png');
    expect([out.width, out.height]).toEqual([src.width! * 2, src.height! * 2]);
    expect(done.output).toEqual({ width: src.width! * 2, height: src.height! * 2, format: 'png', bytes: readFileSync(j.output).length });
    expect(done.applied).toMatchObject({ scale: 2, version: '1.4', bgUpsampler: 'realesrgan', bgTile: 400, format: 'png' });
    expect(done.meta).toMatchObject({ faces: 2, noFace: false, oomRetries: 0, scaleMethod: 'native', modelLoaded: false, device: 'cuda' });
    const progress = e.messages.filter((m) => m.type === 'progress' && m.id === j.id);
    expect(progress.length).toBeGreaterThan(0);
  }, 120_000);

  it('honours scale 1 and 4, jpeg/webp with quality, onlyCenterFace and aligned input', async () => {
    const e = start([], CUDA);
    await e.ready();
    const src = await sharp(inputs.small).metadata();
    const a = job(inputs.small, { scale: 4, format: 'jpeg', quality: 70 });
    const b = job(inputs.small, { scale: 1, format: 'webp', quality: 80, onlyCenterFace: true });
    const c = job(inputs.aligned, { scale: 2, aligned: true });
    const d = job(inputs.png, { scale: 2, bgUpsampler: 'none' });
    e.send(a, b, c, d);
    const da = await e.done(a.id);
    const ma = await sharp(a.output).metadata();
    expect([ma.format, ma.width, ma.height]).toEqual(['jpeg', src.width! * 4, src.height! * 4]);
    expect(da.applied).toMatchObject({ scale: 4, format: 'jpeg', quality: 70 });
    expect(da.meta).toMatchObject({ faces: 2, scaleMethod: 'native' });

    const db = await e.done(b.id);
    const mb = await sharp(b.output).metadata();
    expect([mb.format, mb.width, mb.height]).toEqual(['webp', src.width, src.height]);
    expect(db.applied).toMatchObject({ scale: 1, format: 'webp', quality: 80, onlyCenterFace: true });
    expect(db.meta).toMatchObject({ faces: 1 });

    const dc = await e.done(c.id);
    const mc = await sharp(c.output).metadata();
    expect([mc.width, mc.height]).toEqual([1024, 1024]);
    expect(dc.applied).toMatchObject({ aligned: true, bgUpsampler: 'none' });
    expect(dc.meta).toMatchObject({ faces: 1 });

    const dd = await e.done(d.id);
    const pm = await sharp(inputs.png).metadata();
    expect([dd.output.width, dd.output.height]).toEqual([pm.width! * 2, pm.height! * 2]);
    expect(dd.applied).toMatchObject({ bgUpsampler: 'none' });
    expect(dd.applied).not.toHaveProperty('bgTile');
  });

  it('loads another version on demand, keeps at most --max-models resident, least recently used evicted first', async () => {
    const one = start([], CUDA);
    const before = ((await one.ready()).info as { memory: { gpuAllocatedBytes: number } }).memory.gpuAllocatedBytes;
    const v13 = job(inputs.png, { version: '1.3' });
    one.send(v13);
    const d13 = await one.done(v13.id);
    expect(d13.meta).toMatchObject({ modelLoaded: true, evicted: ['1.4'], versionsLoaded: ['1.3'] });
    // the evicted model was really released: GPU memory is back to one model's worth
    expect((d13.meta as { memory: { gpuAllocatedBytes: number } }).memory.gpuAllocatedBytes).toBe(before);
    expect(one.stderr).toContain(`GFPGANer(model_path='${join(models, 'GFPGANv1.3.pth')}', upscale=2, arch='clean', channel_multiplier=2`);
    expect(one.messages.some((m) => m.type === 'log' && /evicted GFPGAN 1\.4/.test(m.message))).toBe(true);

    const dir = makeModelDir('models-no-restoreformer', ['RestoreFormer.pth']);
    // version 1 (the 'original' arch) needs basicsr's compiled CUDA ops: this double plays a basicsr built with them
    const two = start(['--max-models', '2'], { ...CUDA, GFPGAN_DOUBLE_BASICSR_EXT: '1' }, dir);
    const ready = await two.ready();
    expect((ready.info as Record<string, unknown>).maxModels).toBe(2);
    const steps: Array<[JobOptions['version'], Record<string, unknown>]> = [
      ['1', { modelLoaded: true, evicted: [], versionsLoaded: ['1.4', '1'] }],
      ['1.4', { modelLoaded: false, evicted: [], versionsLoaded: ['1', '1.4'] }],
      ['1.2', { modelLoaded: true, evicted: ['1'], versionsLoaded: ['1.4', '1.2'] }],
    ];
    for (const [version, meta] of steps) {
      const j = job(inputs.png, { version });
      two.send(j);
      const d = await two.done(j.id);
      expect(d.meta).toMatchObject(meta);
      expect(d.applied).toMatchObject({ version });
    }
    expect(two.stderr).toContain(`GFPGANer(model_path='${join(dir, 'GFPGANv1.pth')}', upscale=2, arch='original', channel_multiplier=1`);
    expect(two.stderr).toContain(
      `GFPGANer(model_path='${join(dir, 'GFPGANCleanv1-NoCE-C2.pth')}', upscale=2, arch='clean', channel_multiplier=2`,
    );

    const missing = job(inputs.png, { version: 'RestoreFormer' });
    two.send(missing);
    const err = await two.result(missing.id);
    expect(err).toMatchObject({ type: 'error', code: 'ENGINE_FAILED', retryable: false });
    expect((err as ErrorMessage).message).toContain('RestoreFormer.pth');
    expect((err as ErrorMessage).message).toContain('https://github.com/TencentARC/GFPGAN/releases/download/v1.3.4/RestoreFormer.pth');
    // loaded models were kept: a missing file evicts nothing
    const again = job(inputs.png, { version: '1.2' });
    two.send(again);
    expect((await two.done(again.id)).meta).toMatchObject({ modelLoaded: false, versionsLoaded: ['1.4', '1.2'] });
  });

  it('CUDA out of memory once: releases what the failed attempt held, empties the cache and retries with half the tile', async () => {
    const e = start([], { ...CUDA, GFPGAN_DOUBLE_OOM: '1' });
    const weights = ((await e.ready()).info as { memory: { gpuAllocatedBytes: number } }).memory.gpuAllocatedBytes;
    const j = job(inputs.small, { bgTile: 400 });
    e.send(j);
    const d = await e.done(j.id);
    expect(d.meta).toMatchObject({ oomRetries: 1, bgTile: 200 });
    expect(d.applied).toMatchObject({ bgTile: 200 });
    const src = await sharp(inputs.small).metadata();
    expect([d.output.width, d.output.height]).toEqual([src.width! * 2, src.height! * 2]);
    const warn = e.messages.find((m): m is LogMessage => m.type === 'log' && m.id === j.id && m.level === 'warn');
    expect(warn?.message).toMatch(/CUDA out of memory.*retrying once with background tile 200/);
    // the traceback's frames (the layers that ran before the OOM) and the upsampler's last input/output were dropped
    // before the cache was emptied, so only the model weights were still held and the rest went back to the driver
    expect(emptyCacheLive(e.stderr)).toEqual([weights]);
    // the fault is spent: the next job runs at the tile it asked for
    const k = job(inputs.small, { bgTile: 400 });
    e.send(k);
    expect((await e.done(k.id)).meta).toMatchObject({ oomRetries: 0, bgTile: 400 });
  });

  it('notices an OOM that Real-ESRGAN or GFPGAN swallowed, and an OOM with tiling off', async () => {
    // a later tile fails: Real-ESRGAN prints the error and pastes a stale tile; the adapter must not deliver that
    const silent = start([], { ...CUDA, GFPGAN_DOUBLE_OOM: '1', GFPGAN_DOUBLE_OOM_AFTER: '1' });
    await silent.ready();
    const a = job(inputs.small, { bgTile: 400 });
    silent.send(a);
    expect((await silent.done(a.id)).meta).toMatchObject({ oomRetries: 1, bgTile: 200 });
    expect(silent.stderr).toContain('Error CUDA out of memory');

    // the face network fails: GFPGAN prints it and keeps the unrestored crop
    const face = start([], { ...CUDA, GFPGAN_DOUBLE_FACE_OOM: '1' });
    await face.ready();
    const b = job(inputs.small, { bgTile: 400 });
    face.send(b);
    expect((await face.done(b.id)).meta).toMatchObject({ oomRetries: 1, faces: 2 });
    expect(face.stderr).toContain('Failed inference for GFPGAN: CUDA out of memory');

    // no tiling: the whole image is the tile, so the retry uses half its longer side
    const whole = start([], { ...CUDA, GFPGAN_DOUBLE_OOM: '1' });
    await whole.ready();
    const c = job(inputs.small, { bgTile: 0 });
    whole.send(c);
    expect((await whole.done(c.id)).meta).toMatchObject({ oomRetries: 1, bgTile: 320 });
  });

  it('CUDA out of memory on the retry too: ENGINE_GPU_OOM, and the engine keeps serving', async () => {
    const e = start([], { ...CUDA, GFPGAN_DOUBLE_OOM: '1000' });
    await e.ready();
    const j = job(inputs.small, { bgTile: 400 });
    e.send(j);
    const r = await e.result(j.id);
    expect(r).toMatchObject({ type: 'error', code: 'ENGINE_GPU_OOM', retryable: true });
    expect((r as ErrorMessage).message).toContain('background tiles tried: 400, 200');
    // tiles at or below the double's threshold (128 px with padding) fit
    const k = job(inputs.small, { bgTile: 100 });
    e.send(k);
    expect((await e.done(k.id)).meta).toMatchObject({ oomRetries: 0, bgTile: 100 });
  });

  it('an odd bgTile (301) is rounded down to even: x2 RRDBNet pixel_unshuffle asserts even tiles', async () => {
    const e = start([], CUDA);
    await e.ready();
    const odd = job(inputs.small, { bgTile: 301 });
    const tiny = job(inputs.small, { bgTile: 7 });
    e.send(odd, tiny);
    const d = await e.done(odd.id);
    expect(d.applied).toMatchObject({ bgTile: 300 });
    expect(d.meta).toMatchObject({ bgTile: 300, oomRetries: 0 });
    const src = await sharp(inputs.small).metadata();
    expect([d.output.width, d.output.height]).toEqual([src.width! * 2, src.height! * 2]);
    const t = await e.done(tiny.id);
    expect(t.applied).toMatchObject({ bgTile: 32 });
  });

  it('OOM with bgTile 0 on a 962 px photo: retries at an even half (480), with the failed attempt released first', async () => {
    // 1200 MiB GPU: the untiled 962x641 background needs ~1.3 GiB of activations, a 480 px tile ~0.5 GiB
    const e = start([], { ...CUDA, GFPGAN_DOUBLE_GPU_TOTAL_MB: '1200' });
    const weights = ((await e.ready()).info as { memory: { gpuAllocatedBytes: number } }).memory.gpuAllocatedBytes;
    const j = job(inputs.w962, { bgTile: 0 });
    e.send(j);
    const d = await e.done(j.id);
    expect(d.meta).toMatchObject({ oomRetries: 1, bgTile: 480 });
    expect(d.applied).toMatchObject({ bgTile: 480 });
    expect([d.output.width, d.output.height]).toEqual([1924, 1282]);
    expect(emptyCacheLive(e.stderr)).toEqual([weights]);
    const warn = e.messages.find((m): m is LogMessage => m.type === 'log' && m.id === j.id && m.level === 'warn');
    expect(warn?.message).toMatch(/retrying once with background tile 480/);
  });

  it('version 1 with a pip-installed basicsr: refused at load with how to build the CUDA ops (permanent); --check says so', async () => {
    const e = start([], CUDA);
    await e.ready();
    const v1 = job(inputs.small, { version: '1' });
    const ok = job(inputs.png);
    e.send(v1, ok);
    const err = (await e.result(v1.id)) as ErrorMessage;
    expect(err).toMatchObject({ type: 'error', code: 'ENGINE_FAILED', retryable: false });
    expect(err.message).toMatch(/fused_act_ext/);
    expect(err.message).toMatch(/BASICSR_EXT=True/);
    expect(err.message).toMatch(/BASICSR_JIT=True/);
    // refused before GFPGANer was built: the resident model was not evicted for it
    expect((await e.done(ok.id)).meta).toMatchObject({ modelLoaded: false, versionsLoaded: ['1.4'] });

    // as the default version it stops start-up
    const start1 = start(['--default-version', '1'], CUDA);
    const se = await start1.waitFor<ErrorMessage>((m) => m.type === 'error', 'start-up error');
    expect(se).toMatchObject({ code: 'ENGINE_START_FAILED', retryable: false });
    expect(se.message).toMatch(/BASICSR_EXT=True/);

    // BASICSR_JIT=True compiles the ops when basicsr is imported, which needs nvcc
    const jit = start([], { ...CUDA, BASICSR_JIT: 'True' });
    const je = await jit.waitFor<ErrorMessage>((m) => m.type === 'error', 'start-up error');
    expect(je.code).toBe('ENGINE_START_FAILED');
    expect(je.message).toMatch(/CUDA_HOME/);
    expect(je.message).toMatch(/nvcc/);
    // ... and works where nvcc is
    const built = start([], { ...CUDA, BASICSR_JIT: 'True', GFPGAN_DOUBLE_NVCC: '1' });
    await built.ready();
    const v1b = job(inputs.small, { version: '1' });
    built.send(v1b);
    expect((await built.done(v1b.id)).meta).toMatchObject({ faces: 2, versionsLoaded: ['1'] });

    // on CPU the compiled op refuses CPU tensors (GFPGAN would swallow that and return unrestored faces)
    const cpu = start([], { GFPGAN_DOUBLE_BASICSR_EXT: '1' });
    await cpu.ready();
    const v1c = job(inputs.png, { version: '1' });
    cpu.send(v1c);
    const ce = (await cpu.result(v1c.id)) as ErrorMessage;
    expect(ce).toMatchObject({ type: 'error', code: 'ENGINE_FAILED', retryable: false });
    expect(ce.message).toMatch(/CUDA/);
  });

  it('facexlib weights missing: start-up fails with the exact commands, and nothing is ever downloaded', async () => {
    const dir = makeModelDir('models-no-facexlib', ['gfpgan/weights/detection_Resnet50_Final.pth', 'gfpgan/weights/parsing_parsenet.pth']);
    const e = start([], CUDA, dir);
    const err = await e.waitFor<ErrorMessage>((m) => m.type === 'error', 'start-up error');
    expect(err).toMatchObject({ code: 'ENGINE_START_FAILED', retryable: false });
    const weights = join(dir, 'gfpgan/weights');
    expect(err.message).toContain(
      `mkdir -p ${weights} && curl -L -o ${join(weights, 'detection_Resnet50_Final.pth')} https://github.com/xinntao/facexlib/releases/download/v0.1.0/detection_Resnet50_Final.pth`,
    );
    expect(err.message).toContain(
      `curl -L -o ${join(weights, 'parsing_parsenet.pth')} https://github.com/xinntao/facexlib/releases/download/v0.2.2/parsing_parsenet.pth`,
    );
    expect((await e.exit()).code).toBe(1);
    expect(e.stderr).not.toContain(DOWNLOAD_CALLED);

    // removed while the engine runs: loading another version fails (permanently) instead of downloading
    const dir2 = makeModelDir('models-facexlib-removed');
    const live = start([], CUDA, dir2);
    await live.ready();
    rmSync(join(dir2, 'gfpgan/weights/parsing_parsenet.pth'));
    const j = job(inputs.png, { version: '1.3' });
    live.send(j);
    const je = (await live.result(j.id)) as ErrorMessage;
    expect(je).toMatchObject({ type: 'error', code: 'ENGINE_FAILED', retryable: false });
    expect(je.message).toContain('parsing_parsenet.pth');
    expect(live.stderr).not.toContain(DOWNLOAD_CALLED);
  });

  it('classifies failures: assertion, name, key and unpickling errors are permanent; other runtime errors retryable', async () => {
    const dir = makeModelDir('models-bad-checkpoints');
    // a checkpoint that pickles more than tensors (refused by torch >= 2.6's weights_only default) and one without params
    writeFileSync(join(dir, 'GFPGANv1.3.pth'), 'TEST-DOUBLE-CHECKPOINT {"keys": ["params_ema"], "globals": ["argparse.Namespace"]}');
    writeFileSync(join(dir, 'RestoreFormer.pth'), 'TEST-DOUBLE-CHECKPOINT {"keys": ["state_dict"]}');
    const e = start([], { ...CUDA, GFPGAN_DOUBLE_RAISE: 'AssertionError,NameError,KeyError,UnpicklingError,RuntimeError' }, dir);
    await e.ready();
    const jobs = Array.from({ length: 5 }, () => job(inputs.png));
    e.send(...jobs);
    const results = [];
    for (const j of jobs) results.push((await e.result(j.id)) as ErrorMessage);
    expect(results.map((r) => [r.code, r.retryable])).toEqual([
      ['ENGINE_FAILED', false],
      ['ENGINE_FAILED', false],
      ['ENGINE_FAILED', false],
      ['ENGINE_FAILED', false],
      ['ENGINE_FAILED', true],
    ]);
    expect(results[0]!.message).toMatch(/^AssertionError/);
    expect(results[4]!.message).toMatch(/illegal memory access/);

    const pickled = job(inputs.png, { version: '1.3' });
    const noParams = job(inputs.png, { version: 'RestoreFormer' });
    const ok = job(inputs.png);
    e.send(pickled, noParams, ok);
    const pe = (await e.result(pickled.id)) as ErrorMessage;
    expect(pe).toMatchObject({ type: 'error', code: 'ENGINE_FAILED', retryable: false });
    expect(pe.message).toMatch(/weights_only/);
    expect(pe.message).toMatch(/TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1/);
    const ke = (await e.result(noParams.id)) as ErrorMessage;
    expect(ke).toMatchObject({ type: 'error', code: 'ENGINE_FAILED', retryable: false });
    expect(ke.message).toMatch(/KeyError: 'params'/);
    expect(ke.message).toContain('https://github.com/TencentARC/GFPGAN/releases/download/v1.3.4/RestoreFormer.pth');
    await e.done(ok.id);
  });

  it('no face found: still a background result, and the metadata says so', async () => {
    const e = start([], { ...CUDA, GFPGAN_DOUBLE_NO_FACE: '1' });
    await e.ready();
    const j = job(inputs.small, { format: 'jpeg' });
    e.send(j);
    const d = await e.done(j.id);
    expect(d.meta).toMatchObject({ faces: 0, noFace: true, bgUpsampler: 'realesrgan' });
    const src = await sharp(inputs.small).metadata();
    const out = await sharp(j.output).metadata();
    expect([out.format, out.width, out.height]).toEqual(['jpeg', src.width! * 2, src.height! * 2]);
  });

  it('unreadable input: IMAGE_UNREADABLE (truncated or corrupt), INPUT_MISSING (gone); the engine carries on', async () => {
    const e = start([], CUDA);
    await e.ready();
    const t = job(inputs.truncated);
    const g = job(inputs.garbage);
    const m = job(join(work, 'does-not-exist.jpg'));
    const ok = job(inputs.png);
    e.send(t, g, m, ok);
    expect(await e.result(t.id)).toMatchObject({ type: 'error', code: 'IMAGE_UNREADABLE', retryable: false });
    expect(await e.result(g.id)).toMatchObject({ type: 'error', code: 'IMAGE_UNREADABLE', retryable: false });
    expect(await e.result(m.id)).toMatchObject({ type: 'error', code: 'INPUT_MISSING', retryable: false });
    await e.done(ok.id);
    expect(existsSync(t.output)).toBe(false);
  });

  it('on CPU: fp32, no background upsampler by default (as GFPGAN does), output still at scale', async () => {
    const e = start(['--half']);
    const ready = await e.ready();
    expect(ready.info).toMatchObject({ device: 'cpu', gpuName: null, half: false, bgUpsampler: 'none' });
    expect(String((ready.info as Record<string, unknown>).bgUpsamplerNote)).toMatch(/CPU/);
    expect(e.stderr).not.toContain('RealESRGANer(');
    const j = job(inputs.png, { bgUpsampler: 'realesrgan' });
    e.send(j);
    const d = await e.done(j.id);
    expect(d.applied).toMatchObject({ bgUpsampler: 'none' });
    const pm = await sharp(inputs.png).metadata();
    expect([d.output.width, d.output.height]).toEqual([pm.width! * 2, pm.height! * 2]);

    const forced = start(['--bg-upsampler', 'realesrgan']);
    expect((await forced.ready()).info).toMatchObject({ device: 'cpu', bgUpsampler: 'realesrgan', half: false });
    expect(forced.stderr).toContain('half=False, device=cpu');
  });

  it('cancel between stages, shutdown after the current job, SIGTERM and stdin close end the process', async () => {
    const slow = start([], { ...CUDA, GFPGAN_DOUBLE_DELAY_MS: '1500' });
    await slow.ready();
    const j = job(inputs.png);
    slow.send(j, { type: 'cancel', id: j.id });
    expect(await slow.result(j.id)).toEqual({ type: 'canceled', id: j.id });
    expect(existsSync(j.output)).toBe(false);

    const k = job(inputs.png);
    slow.send(k, { type: 'shutdown' });
    await slow.done(k.id);
    expect(await slow.exit()).toEqual({ code: 0, signal: null });

    const term = start([], CUDA);
    await term.ready();
    term.child.kill('SIGTERM');
    expect(await term.exit()).toEqual({ code: 0, signal: null });

    const closed = start([], CUDA);
    await closed.ready();
    closed.child.stdin.end();
    expect(await closed.exit()).toEqual({ code: 0, signal: null });
  });

  it('fails start-up with ENGINE_START_FAILED when the default weights are missing', async () => {
    const dir = makeModelDir('models-no-default', ['GFPGANv1.4.pth']);
    const e = start([], CUDA, dir);
    const err = await e.waitFor<ErrorMessage>((m) => m.type === 'error', 'start-up error');
    expect(err.id).toBeUndefined();
    expect(err.code).toBe('ENGINE_START_FAILED');
    expect(err.message).toContain('GFPGANv1.4.pth');
    expect((await e.exit()).code).toBe(1);
  });

  describe('--check (what `photoenhance doctor` runs)', () => {
    /** What `--check` prints (the fields these tests read). */
    interface CheckReport {
      ok: boolean;
      interpreter: { path: string; ok: boolean };
      imports: Array<{ module: string; ok: boolean; version?: string; fix?: string }>;
      problems: Array<{ check: string; message: string; fix: string }>;
      warnings: Array<{ check: string; fix: string }>;
      basicsrOps: { fusedAct: boolean; upfirdn2d: boolean };
    }
    function check(args: string[], env: Record<string, string> = {}): { code: number | null; report: CheckReport; stdout: string } {
      const base: Record<string, string> = {};
      for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('GFPGAN_DOUBLE_')) base[k] = v;
      const r = spawnSync(PYTHON!, [ADAPTER, '--check', ...args], {
        env: { ...base, PYTHONPATH: DOUBLE, PYTHONDONTWRITEBYTECODE: '1', ...env },
        encoding: 'utf8',
        timeout: DEADLINE_MS,
      });
      const lines = r.stdout.trim().split('\n');
      expect(lines).toHaveLength(1);
      return { code: r.status, report: JSON.parse(lines[0]!) as CheckReport, stdout: r.stdout };
    }

    it('a missing model directory: not usable, and says what to create and download where', () => {
      const dir = join(work, 'no-such-models');
      const { code, report } = check(['--model-dir', dir]);
      expect(code).toBe(1);
      expect(report.ok).toBe(false);
      expect(report.interpreter).toMatchObject({ path: expect.any(String), ok: true });
      expect(report.imports.every((i: { ok: boolean }) => i.ok)).toBe(true);
      const problems = report.problems as Array<{ check: string; message: string; fix: string }>;
      expect(problems.find((p) => p.check === 'models')?.fix).toContain(`mkdir -p ${dir}`);
      const weights = problems.find((p) => p.check === 'model GFPGANv1.4.pth');
      expect(weights?.message).toContain(join(dir, 'GFPGANv1.4.pth'));
      expect(weights?.fix).toContain('https://github.com/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.4.pth');
      expect(problems.some((p) => p.fix.includes(join(dir, 'gfpgan/weights/detection_Resnet50_Final.pth')))).toBe(true);
    });

    it('everything in place with a GPU: usable, with the GPU named and package versions from metadata', () => {
      const { code, report } = check(['--model-dir', models], CUDA);
      expect(code).toBe(0);
      expect(report).toMatchObject({
        ok: true,
        problems: [],
        cuda: { available: true, deviceName: 'NVIDIA Test Double GPU' },
        device: { resolved: 'cuda' },
      });
      const versions = Object.fromEntries((report.imports as Array<{ module: string; version: string }>).map((i) => [i.module, i.version]));
      expect(versions).toMatchObject({
        torch: '2.6.0+testdouble',
        basicsr: '1.4.2+testdouble',
        facexlib: '0.3.0+testdouble',
        gfpgan: '1.3.8+testdouble',
        realesrgan: '0.3.0+testdouble',
      });
      // version 1 needs basicsr's compiled ops, which a pip install lacks: a warning (a problem if it is the default)
      expect(report.basicsrOps).toMatchObject({ fusedAct: false, upfirdn2d: false });
      const v1 = (report.warnings as Array<{ check: string; fix: string }>).find((w) => w.check === 'version 1');
      expect(v1?.fix).toMatch(/BASICSR_EXT=True/);
      const asDefault = check(['--model-dir', models, '--default-version', '1'], CUDA);
      expect(asDefault.code).toBe(1);
      expect((asDefault.report.problems as Array<{ check: string }>).some((p) => p.check === 'version 1')).toBe(true);
      const built = check(['--model-dir', models, '--default-version', '1'], { ...CUDA, GFPGAN_DOUBLE_BASICSR_EXT: '1' });
      expect(built.code).toBe(0);
      expect(built.report.basicsrOps).toMatchObject({ fusedAct: true, upfirdn2d: true });
    });

    it('--device cuda without a visible GPU, and a missing package, are problems with fixes', () => {
      const cuda = check(['--model-dir', models, '--device', 'cuda']);
      expect(cuda.code).toBe(1);
      expect(cuda.report.problems.find((p: { check: string }) => p.check === 'cuda')?.fix).toMatch(/CUDA build of torch/);

      // hide the gfpgan double behind an empty package that fails to import
      const shadow = join(work, 'shadow');
      mkdirSync(join(shadow, 'gfpgan'), { recursive: true });
      writeFileSync(join(shadow, 'gfpgan', '__init__.py'), 'raise ImportError("No module named \'gfpgan.archs\'")\n');
      const noPkg = check(['--model-dir', models], { ...CUDA, PYTHONPATH: `${shadow}:${DOUBLE}` });
      expect(noPkg.code).toBe(1);
      const entry = noPkg.report.imports.find((i: { module: string }) => i.module === 'gfpgan');
      expect(entry).toMatchObject({ ok: false, fix: `${noPkg.report.interpreter.path as string} -m pip install gfpgan` });

      // opencv-python on a headless host without libGL: the fix is the system libraries, not another pip install
      const headless = join(work, 'headless');
      mkdirSync(join(headless, 'cv2'), { recursive: true });
      writeFileSync(
        join(headless, 'cv2', '__init__.py'),
        'raise ImportError("libGL.so.1: cannot open shared object file: No such file or directory")\n',
      );
      const noGl = check(['--model-dir', models], { ...CUDA, PYTHONPATH: `${headless}:${DOUBLE}` });
      expect(noGl.code).toBe(1);
      expect(noGl.report.imports.find((i: { module: string }) => i.module === 'cv2')?.fix).toMatch(
        /apt-get install -y libgl1 libglib2\.0-0/,
      );
    });
  });
});
