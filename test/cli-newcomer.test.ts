import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, REPO, SAMPLE, cleanEnv, freePort, runCli, startLauncher, type RunningLauncher } from '../apps/cli/test/launch.js';

/**
 * What a newcomer meets first with `photoenhance` (issue 13): a real --version, a fast --help with examples, the live
 * `watch` under a real pseudo-terminal (util-linux `script`), the gateway found without configuration, stdin/stdout and
 * --json for `enhance`, colour only on a terminal and never with NO_COLOR.
 */

const CLI_VERSION = (JSON.parse(readFileSync(join(REPO, 'apps/cli/package.json'), 'utf8')) as { version: string }).version;

interface PtyRun {
  code: number | null;
  output: string;
}

/**
 * Run the CLI under a pseudo-terminal (`script -qfec`: stdin, stdout and stderr are the pty), call `onOutput` with all
 * output so far on every chunk (it may write keys, e.g. Ctrl-C, to the terminal); bounded by `timeoutMs`.
 */
function underPty(
  args: string[],
  env: NodeJS.ProcessEnv,
  onOutput: (out: string, keys: (s: string) => void) => void,
  timeoutMs = 60_000,
): Promise<PtyRun> {
  // `exec`: the CLI itself is the pty's foreground process, not a shell that waits for it (dash, seeing the terminal's
  // SIGINT while it waits, ends with 130 whatever the CLI's own exit code).
  const quoted = [process.execPath, BIN, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  return new Promise((resolve, reject) => {
    const child = spawn('/usr/bin/script', ['-qfec', `exec ${quoted}`, '/dev/null'], { env, cwd: REPO, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    const keys = (s: string): void => void child.stdin.write(s);
    const onData = (d: Buffer): void => {
      out += d.toString();
      onOutput(out, keys);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`photoenhance ${args.join(' ')} under a pty did not finish within ${timeoutMs} ms:\n${out}`));
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output: out });
    });
  });
}

const frames = (out: string): number => out.split('Ctrl-C to stop').length - 1;

let work: string;
beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'pe-cli-newcomer-'));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('photoenhance without a gateway', () => {
  it('--version prints the CLI version and exits 0; the model version is --model-version', async () => {
    const v = await runCli(['--version']);
    expect(v.code).toBe(0);
    expect(v.stdout.trim()).toBe(CLI_VERSION);
    const old = await runCli(['enhance', 'photo.jpg', '--version', '1.3']);
    expect(old.code).toBe(2);
    expect(old.stderr).toContain('--model-version 1.3');
    const bad = await runCli(['enhance', SAMPLE(1), '--model-version', '7', '--url', 'http://127.0.0.1:9']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('INVALID_OPTION (--model-version)');
  });

  it('--help answers within 1 s (command code is loaded only when a command runs)', async () => {
    // Best of five: the figure is start-up cost, not the load other processes put on a shared machine.
    let best = Infinity;
    let help = '';
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      const r = await runCli(['--help']);
      best = Math.min(best, performance.now() - t0);
      expect(r.code).toBe(0);
      help = r.stdout;
    }
    for (const c of ['start', 'enhance', 'status', 'doctor', 'batch', 'watch']) expect(help).toMatch(new RegExp(`^  ${c}\\b`, 'm'));
    expect(best).toBeLessThanOrEqual(1000);
  });

  it('every command has an Examples section and one style of defaults', async () => {
    for (const c of ['start', 'enhance', 'status', 'doctor', 'batch', 'watch']) {
      const r = await runCli([c, '--help']);
      expect(r.code, c).toBe(0);
      expect(r.stdout, c).toMatch(/\nExamples:\n {2}\$ photoenhance|\nExamples:\n {2}\$ (PORT|cat)/);
      // commander's own `(default: "3")` next to hand-written `(default 2)` was two styles; only `(default: X)` now.
      expect(r.stdout, c).not.toMatch(/\(default: "|\(default [^:]/);
    }
  });

  it('errors are coloured on a terminal, plain with NO_COLOR and when piped', async () => {
    const url = `http://127.0.0.1:${await freePort()}`;
    const tty = await underPty(
      ['status', 'j_00000000000000000000', '--url', url],
      cleanEnv({ NO_COLOR: undefined, FORCE_COLOR: undefined, TERM: 'xterm' }),
      () => undefined,
    );
    expect(tty.code).toBe(3);
    expect(tty.output).toContain('\x1b[31merror\x1b[0m: cannot reach the gateway');
    const noColor = await underPty(
      ['status', 'j_00000000000000000000', '--url', url],
      cleanEnv({ NO_COLOR: '1', FORCE_COLOR: undefined, TERM: 'xterm' }),
      () => undefined,
    );
    expect(noColor.code).toBe(3);
    expect(noColor.output).toContain('error: cannot reach the gateway');
    expect(noColor.output).not.toContain('\x1b[');
    const piped = await runCli(['status', 'j_00000000000000000000', '--url', url], {
      env: cleanEnv({ NO_COLOR: undefined, FORCE_COLOR: undefined }),
    });
    expect(piped.stderr).not.toContain('\x1b[');
  });
});

describe('photoenhance with a running launcher (npm start) on another port', () => {
  let launcher: RunningLauncher;
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    launcher = await startLauncher();
    // No PHOTOENHANCE_URL: the CLI must find the launcher through its state file in PHOTOENHANCE_VAR_DIR.
    env = cleanEnv({ PHOTOENHANCE_VAR_DIR: launcher.varDir, NO_COLOR: undefined, FORCE_COLOR: undefined, TERM: 'xterm' });
  }, 180_000);
  afterAll(async () => launcher?.dispose(), 60_000);

  it('the launcher\'s "try" hints name the URL it listens on', () => {
    expect(launcher.port).not.toBe(8080);
    expect(launcher.output()).toContain(`try:  curl -sS -F image=@photo.jpg ${launcher.url}/v1/jobs`);
    expect(launcher.output()).toMatch(
      new RegExp(`or: {2}node \\S+photoenhance\\.js enhance photo\\.jpg --url ${launcher.url.replace(/\./g, '\\.')}\n`),
    );
  });

  it("finds the gateway by the launcher's state file; PHOTOENHANCE_URL wins over it", async () => {
    const found = await runCli(['watch', '--once', '--json'], { env });
    expect(found.code, found.stderr).toBe(0);
    expect((JSON.parse(found.stdout) as { url: string }).url).toBe(launcher.url);
    const closed = `http://127.0.0.1:${await freePort()}`;
    const overridden = await runCli(['watch', '--once'], { env: { ...env, PHOTOENHANCE_URL: closed } });
    expect(overridden.code).toBe(3);
    expect(overridden.stderr).toContain(`cannot reach the gateway at ${closed}`);
  });

  it('watch redraws under a terminal until Ctrl-C, then exits 0', async () => {
    let sent = false;
    const run = await underPty(['watch', '--interval', '200'], env, (out, keys) => {
      if (!sent && frames(out) >= 4) {
        sent = true;
        keys('\x03'); // Ctrl-C: the terminal sends SIGINT to the foreground process group
      }
    });
    expect(sent, run.output).toBe(true);
    expect(run.code, run.output).toBe(0);
    expect(frames(run.output)).toBeGreaterThanOrEqual(4);
    expect(run.output).toContain(`photoenhance watch  ${launcher.url}`);
    // State words are coloured on a terminal (admission of the one host).
    expect(run.output).toContain('\x1b[32madmitting\x1b[0m');
  }, 90_000);

  it('enhance - -o - reads stdin and writes the image to stdout', async () => {
    const png = await sharp(SAMPLE(1)).resize({ width: 64 }).png().toBuffer();
    const result = await new Promise<{ code: number | null; stdout: Buffer; stderr: string }>((resolve, reject) => {
      const child = spawn(process.execPath, [BIN, 'enhance', '-', '-o', '-', '--scale', '2'], {
        env,
        cwd: work,
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      const chunks: Buffer[] = [];
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => chunks.push(d));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`enhance - -o - did not finish within 120 s: ${stderr}`));
      }, 120_000);
      child.on('close', (code) => {
        clearTimeout(timer);
        resolve({ code, stdout: Buffer.concat(chunks), stderr });
      });
      child.stdin.end(png);
    });
    expect(result.code, result.stderr).toBe(0);
    const meta = await sharp(result.stdout).metadata();
    expect(meta).toMatchObject({ format: 'png', width: 128 });
  }, 150_000);

  it('enhance --json prints the finished job with the path it wrote', async () => {
    const input = join(work, 'face.jpg');
    await sharp(SAMPLE(2)).resize({ width: 80 }).jpeg().toFile(input);
    const run = await runCli(['enhance', input, '--json', '--model-version', '1.3'], { env, timeoutMs: 120_000 });
    expect(run.code, run.stderr).toBe(0);
    const view = JSON.parse(run.stdout) as { id: string; status: string; path: string; options: Record<string, unknown> };
    expect(view).toMatchObject({ status: 'completed', path: join(work, 'face_enhanced.jpg') });
    expect(view.options.version).toBe('1.3');
    expect((await sharp(view.path).metadata()).width).toBe(160);
  }, 150_000);
});
