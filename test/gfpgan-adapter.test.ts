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
      if (this.exitInfo) throw new Error(`engine exited (${JSON.stringify(this.exitInfo)}) before ${what}; stderr:\n${this.stderr.slice(-3000)}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${what} within ${timeoutMs} ms; messages: ${JSON.stringify(this.messages).slice(-2000)}; stderr:\n${this.stderr.slice(-3000)}`);
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
    return this.waitFor<Result>((m) => (m.type === 'done' || m.type === 'error' || m.type === 'canceled') && m.id === id, `result of ${id}`, timeoutMs);
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
const inputs = { big: SAMPLE, small: '', png: '', aligned: '', truncated: '', garbage: '' };

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
    expect(ready.capabilities.options).toEqual(expect.arrayContaining(['scale', 'version', 'weight', 'onlyCenterFace', 'aligned', 'bgUpsampler', 'bgTile', 'format', 'quality']));
    const info = ready.info as Record<string, any>;
    expect(info).toMatchObject({ device: 'cuda', gpuName: 'NVIDIA Test Double GPU', half: true, bgUpsampler: 'realesrgan', versionsLoaded: ['1.4'], maxModels: 1 });
    expect(info.memory.rssBytes).toBeGreaterThan(96 * 2 ** 20);
    expect(info.memory.gpuTotalBytes).toBe(16384 * 2 ** 20);
    expect(info.memory.gpuAllocatedBytes).toBeGreaterThan(0);
    // constructed as GFPGAN's inference_gfpgan.py does
    expect(e.stderr).toContain(`GFPGANer(model_path='${join(models, 'GFPGANv1.4.pth')}', upscale=2, arch='clean', channel_multiplier=2, bg_upsampler=RealESRGANer, device=cuda)`);
    expect(e.stderr).toContain(`RealESRGANer(scale=2, model_path='${join(models, 'RealESRGAN_x2plus.pth')}', tile=400, tile_pad=10, pre_pad=0, half=True, device=cuda)`);

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
    const two = start(['--max-models', '2'], CUDA, dir);
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
    expect(two.stderr).toContain(`GFPGANer(model_path='${join(dir, 'GFPGANCleanv1-NoCE-C2.pth')}', upscale=2, arch='clean', channel_multiplier=2`);

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

  it('CUDA out of memory once: empties the cache and retries with half the tile', async () => {
    const e = start([], { ...CUDA, GFPGAN_DOUBLE_OOM: '1' });
    await e.ready();
    const j = job(inputs.small, { bgTile: 400 });
    e.send(j);
    const d = await e.done(j.id);
    expect(d.meta).toMatchObject({ oomRetries: 1, bgTile: 200 });
    expect(d.applied).toMatchObject({ bgTile: 200 });
    const src = await sharp(inputs.small).metadata();
    expect([d.output.width, d.output.height]).toEqual([src.width! * 2, src.height! * 2]);
    const warn = e.messages.find((m): m is LogMessage => m.type === 'log' && m.id === j.id && m.level === 'warn');
    expect(warn?.message).toMatch(/CUDA out of memory.*retrying once with background tile 200/);
    expect(e.stderr).toContain('torch.cuda.empty_cache()');
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
    function check(args: string[], env: Record<string, string> = {}): { code: number | null; report: Record<string, any>; stdout: string } {
      const base: Record<string, string> = {};
      for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('GFPGAN_DOUBLE_')) base[k] = v;
      const r = spawnSync(PYTHON!, [ADAPTER, '--check', ...args], {
        env: { ...base, PYTHONPATH: DOUBLE, PYTHONDONTWRITEBYTECODE: '1', ...env },
        encoding: 'utf8',
        timeout: DEADLINE_MS,
      });
      const lines = r.stdout.trim().split('\n');
      expect(lines).toHaveLength(1);
      return { code: r.status, report: JSON.parse(lines[0]!) as Record<string, any>, stdout: r.stdout };
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

    it('everything in place with a GPU: usable, with the GPU named', () => {
      const { code, report } = check(['--model-dir', models], CUDA);
      expect(code).toBe(0);
      expect(report).toMatchObject({ ok: true, problems: [], cuda: { available: true, deviceName: 'NVIDIA Test Double GPU' }, device: { resolved: 'cuda' } });
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
    });
  });
});
