import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { samplePhoto } from './support/images.js';
import { poll } from './support/poll.js';
import { REPO } from './support/stack.js';

/**
 * The README's quick start, run as written on a fresh clone of this commit: `npm install && npm start`, then the curl
 * submit → status → download and `npx photoenhance enhance` from "Then, from another terminal", then Ctrl-C (SIGINT to
 * the foreground process group) and nothing of it left running.
 *
 * The commands are read from README.md's code blocks, so the test breaks when the README changes and its commands do not
 * work. Two substitutions only, both things a reader does: `<id>` becomes the id the submission answered, and the
 * gateway runs on a free port (`PORT`, which the README names) instead of 8080, which another suite may hold — so
 * `http://127.0.0.1:8080` becomes that address. The clone is seeded with a hard-linked copy of node_modules (`cp -al`),
 * and npm runs offline: `npm install` only verifies what is there, it downloads nothing.
 */

const README = readFileSync(join(REPO, 'README.md'), 'utf8');

/** The ```sh blocks of the README section headed `heading`, as lists of lines. */
function shellBlocks(heading: string): string[][] {
  const start = README.indexOf(`\n## ${heading}\n`);
  if (start < 0) throw new Error(`README.md has no "## ${heading}" section`);
  const end = README.indexOf('\n## ', start + 4);
  const section = README.slice(start, end < 0 ? undefined : end);
  return [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) =>
    m[1]!
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean),
  );
}

/** A command line without its trailing `# comment` (the README annotates each line). */
const command = (line: string): string => line.replace(/\s+#\s.*$/, '').trim();

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** Processes whose working directory or command line is inside `dir` (what `npm start` left behind, if anything). */
function processesIn(dir: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cwd = readlinkSync(`/proc/${pid}/cwd`);
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) continue; // a zombie holds nothing
      if (cwd.startsWith(dir) || cmd.includes(dir)) found.push(`${pid}: ${cmd}`);
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return found;
}

/** Run one README line in the clone, bounded; its stdout. */
function run(line: string, cwd: string, env: NodeJS.ProcessEnv, timeoutMs = 60_000): string {
  const r = spawnSync('sh', ['-c', line], { cwd, env, encoding: 'utf8', timeout: timeoutMs });
  if (r.status !== 0) throw new Error(`\`${line}\` exited ${r.status ?? r.signal}: ${r.stderr || r.error?.message}\n${r.stdout}`);
  return r.stdout;
}

const dir = mkdtempSync(join(tmpdir(), 'pe-fresh-clone-'));
const clone = join(dir, 'photoenhance');
let launcher: ChildProcess | undefined;
const output: string[] = [];

afterAll(async () => {
  // Whatever happened: the launcher's whole process group goes, then the clone.
  if (launcher?.pid && launcher.exitCode === null && launcher.signalCode === null) {
    try {
      process.kill(-launcher.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  for (const p of processesIn(clone)) {
    try {
      process.kill(Number(p.split(':')[0]), 'SIGKILL');
    } catch {
      // already gone
    }
  }
  rmSync(dir, { recursive: true, force: true });
}, 30_000);

describe("the README's quick start on a fresh clone", () => {
  it('installs, starts, enhances by curl and by the CLI, and stops on Ctrl-C leaving nothing running', async () => {
    const [setup] = shellBlocks('Set up and run');
    expect(setup).toEqual(['npm install && npm start']);
    const then = shellBlocks('Set up and run')[1]!.map(command);
    const submitLine = then.find((l) => l.startsWith('curl -F image=@photo.jpg'));
    const statusLine = then.find((l) => /^curl http\S+\/v1\/jobs\/<id>$/.test(l));
    const downloadLine = then.find((l) => l.startsWith('curl -OJ') && l.endsWith('/result'));
    const enhanceLine = then.find((l) => l.startsWith('npx photoenhance enhance photo.jpg'));
    expect({ submitLine, statusLine, downloadLine, enhanceLine }).toEqual({
      submitLine: expect.any(String),
      statusLine: expect.any(String),
      downloadLine: expect.any(String),
      enhanceLine: expect.any(String),
    });

    // A fresh clone of this commit, node_modules seeded by hard links (same file system as the repository).
    const head = spawnSync('git', ['-C', REPO, 'rev-parse', 'HEAD'], { encoding: 'utf8' }).stdout.trim();
    expect(spawnSync('git', ['clone', '--quiet', '--no-checkout', REPO, clone], { timeout: 60_000 }).status).toBe(0);
    expect(spawnSync('git', ['-C', clone, 'checkout', '--quiet', '--detach', head], { timeout: 60_000 }).status).toBe(0);
    expect(spawnSync('cp', ['-al', join(REPO, 'node_modules'), join(clone, 'node_modules')], { timeout: 120_000 }).status).toBe(0);
    copyFileSync(samplePhoto(1), join(clone, 'photo.jpg'));

    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      PORT: String(port),
      npm_config_offline: 'true',
      npm_config_audit: 'false',
      npm_config_fund: 'false',
      npm_config_update_notifier: 'false',
    };
    // Nothing of the test runner's own settings leaks into the quick start.
    for (const k of [
      'NODE_ENV',
      'REDIS_URL',
      'HOST',
      'STORAGE_DIR',
      'STORAGE_URL',
      'WORKER_CONFIG',
      'WORKER_ENGINES',
      'PHOTOENHANCE_URL',
      'DASHBOARD_TOKEN',
      'API_KEYS',
      'VITEST',
      'VITEST_POOL_ID',
      'VITEST_WORKER_ID',
    ])
      delete env[k];
    const local = (line: string): string => line.replaceAll('http://127.0.0.1:8080', base);

    // "npm install && npm start", in a process group of its own, as a terminal runs a foreground job.
    const started = Date.now();
    launcher = spawn('sh', ['-c', setup![0]!], { cwd: clone, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      launcher!.once('exit', (code, signal) => resolve({ code, signal })),
    );
    launcher.stdout!.on('data', (d: Buffer) => output.push(d.toString()));
    launcher.stderr!.on('data', (d: Buffer) => output.push(d.toString()));
    const ready = await poll(
      'the launcher to say ready',
      () => {
        if (launcher!.exitCode !== null) throw new Error(`npm start exited ${launcher!.exitCode}:\n${output.join('')}`);
        return /ready: http/.test(output.join('')) ? true : undefined;
      },
      { timeoutMs: 240_000, everyMs: 200, retryErrors: false },
    ).catch((err: Error) => {
      throw new Error(`${err.message}\n${output.join('').slice(-3000)}`);
    });
    expect(ready).toBe(true);
    const startMs = Date.now() - started;

    // curl: submit, status until completed, download.
    const submitted = JSON.parse(run(local(submitLine!), clone, env)) as { id: string; status: string };
    expect(submitted.status).toBe('queued');
    const statusCmd = local(statusLine!).replace('<id>', submitted.id);
    const done = await poll(
      "the job to complete (the README's status command)",
      () => {
        const v = JSON.parse(run(statusCmd, clone, env)) as { status: string };
        if (v.status === 'failed' || v.status === 'canceled') throw new Error(`job ${v.status}: ${JSON.stringify(v)}`);
        return v.status === 'completed' ? v : undefined;
      },
      { timeoutMs: 60_000, everyMs: 200, retryErrors: false },
    );
    expect(done.status).toBe('completed');
    run(local(downloadLine!).replace('<id>', submitted.id), clone, env);
    const input = await sharp(join(clone, 'photo.jpg')).metadata();
    const viaCurl = await sharp(join(clone, 'photo_enhanced.jpg')).metadata();
    expect(viaCurl.format).toBe('jpeg');
    expect(viaCurl.width).toBe(input.width! * 2);

    // The CLI finds the gateway by itself (the launcher's state file), as the README promises.
    run(enhanceLine!, clone, env, 120_000);
    const viaCli = await sharp(join(clone, 'photo_enhanced.png')).metadata();
    expect(viaCli.format).toBe('png');
    expect(viaCli.width).toBe(input.width! * 2);

    // Ctrl-C: SIGINT to the whole foreground group; everything it started stops, in order, and nothing is left.
    const state = JSON.parse(readFileSync(join(clone, 'var', 'launcher.json'), 'utf8')) as Record<string, unknown>;
    process.kill(-launcher.pid!, 'SIGINT');
    const exit = await Promise.race([exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 60_000).unref())]);
    expect(exit, output.join('').slice(-2000)).not.toBe('timeout');
    const left = await poll('every process of the clone to be gone', () => (processesIn(clone).length === 0 ? true : undefined), {
      timeoutMs: 15_000,
      everyMs: 100,
    }).catch(() => processesIn(clone));
    expect(left, `left running after Ctrl-C: ${JSON.stringify(left)}; launcher state ${JSON.stringify(state)}`).toBe(true);
    expect(existsSync(join(clone, 'var', 'launcher.json'))).toBe(false);
    await expect(fetch(`${base}/readyz`, { signal: AbortSignal.timeout(2000) })).rejects.toThrow();
    console.log(
      `fresh clone: npm install && npm start ready in ${(startMs / 1000).toFixed(1)} s; exit after Ctrl-C ${JSON.stringify(exit)}`,
    );
  }, 420_000);
});
