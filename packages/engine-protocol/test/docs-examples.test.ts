/**
 * The minimal engines in docs/engine-protocol.md must work: each is extracted from the doc and run as a real process.
 * The Python one needs Pillow; where it is missing, a stand-in PIL (enough to read PNG sizes) keeps the protocol
 * part of the example tested.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_OPTIONS } from '@photoenhance/contracts';
import { EngineUnderTest } from '../src/testing.js';

const repoRoot = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..');
const doc = readFileSync(join(repoRoot, 'docs/engine-protocol.md'), 'utf8');

function example(title: string): string {
  const m = new RegExp(`\`\`\`\\w+ title=${title.replace('.', '\\.')}\\n([\\s\\S]*?)\`\`\``).exec(doc);
  if (!m) throw new Error(`docs/engine-protocol.md has no code block titled ${title}`);
  return m[1]!;
}

const python = ['python3', 'python'].find((cmd) => spawnSync(cmd, ['--version']).status === 0);
const hasPillow = python !== undefined && spawnSync(python, ['-c', 'import PIL']).status === 0;

const FAKE_PIL = {
  '__init__.py': '',
  'ImageOps.py': 'def exif_transpose(img):\n    return img\n',
  'Image.py': `import builtins, struct
LANCZOS = 1
class _Image:
    def __init__(self, width, height, data):
        self.width, self.height, self.data = width, height, data
    def resize(self, size, resample=None):
        return _Image(size[0], size[1], self.data)
    def convert(self, mode):
        return self
    def save(self, path, format=None, quality=None):
        with builtins.open(path, "wb") as f:
            f.write(self.data)
def open(path):
    with builtins.open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\\x89PNG\\r\\n\\x1a\\n":
        raise OSError("cannot identify image file %r" % path)
    width, height = struct.unpack(">II", data[16:24])
    return _Image(width, height, data)
`,
};

let dir: string;
let photo: string;
const engines: EngineUnderTest[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'engine-docs-'));
  photo = join(dir, 'photo.png');
  await sharp(join(repoRoot, 'node_modules/@vladmandic/face-api/demo/sample6.jpg')).resize({ width: 320 }).png().toFile(photo);
  writeFileSync(join(dir, 'broken.png'), 'definitely not an image');
});
afterAll(async () => {
  for (const e of engines) await e.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function exercise(e: EngineUnderTest, format: 'png' | 'jpeg'): Promise<void> {
  engines.push(e);
  const ready = await e.ready();
  expect(ready.capabilities.scales).toEqual([1, 2, 4]);
  const output = join(dir, `${ready.engine}.${format === 'jpeg' ? 'jpg' : 'png'}`);
  const { result, progress } = await e.run({ id: 'ok', input: photo, output, options: { ...DEFAULT_OPTIONS, scale: 2, format } });
  expect(progress).toHaveLength(1);
  const meta = await sharp(photo).metadata();
  expect(result).toMatchObject({ type: 'done', output: { width: meta.width * 2, height: meta.height * 2, format } });
  const bad = await e.run({
    id: 'bad',
    input: join(dir, 'broken.png'),
    output: join(dir, 'bad.png'),
    options: { ...DEFAULT_OPTIONS, format: 'png' },
  });
  expect(bad.result).toMatchObject({ type: 'error', code: 'IMAGE_UNREADABLE', retryable: false });
  e.closeStdin();
  expect(await e.waitExit()).toEqual({ code: 0, signal: null });
  expect(e.badLines).toEqual([]);
}

describe('docs/engine-protocol.md examples', () => {
  it('the Node example speaks the protocol and writes real images', async () => {
    const home = join(dir, 'node-example');
    mkdirSync(home);
    symlinkSync(join(repoRoot, 'node_modules'), join(home, 'node_modules'), 'dir');
    writeFileSync(join(home, 'minimal-engine.mjs'), example('minimal-engine.mjs'));
    const e = new EngineUnderTest([process.execPath, join(home, 'minimal-engine.mjs')]);
    await exercise(e, 'jpeg');
    const out = await sharp(join(dir, 'sharp-mini.jpg')).metadata();
    expect(out.format).toBe('jpeg');
  });

  it.skipIf(!python)(`the Python example speaks the protocol (${hasPillow ? 'real Pillow' : 'stand-in PIL'})`, async () => {
    const home = join(dir, 'python-example');
    mkdirSync(join(home, 'PIL'), { recursive: true });
    if (!hasPillow) for (const [name, text] of Object.entries(FAKE_PIL)) writeFileSync(join(home, 'PIL', name), text);
    writeFileSync(join(home, 'minimal-engine.py'), example('minimal-engine.py'));
    const e = new EngineUnderTest([python!, '-u', join(home, 'minimal-engine.py')], { env: hasPillow ? {} : { PYTHONPATH: home } });
    await exercise(e, 'png');
  });
});
