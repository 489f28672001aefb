import { createServer, type Server } from 'node:http';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toProblem, type JobView } from '@photoenhance/contracts';
import { SAMPLE, cleanEnv, freePort, runCli, startLauncher, type RunningLauncher } from '../apps/cli/test/launch.js';

let work: string;
beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'pe-cli-test-'));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('photoenhance against a running gateway and worker', () => {
  let launcher: RunningLauncher;
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    launcher = await startLauncher();
    env = cleanEnv({ PHOTOENHANCE_URL: launcher.url });
  }, 180_000);
  afterAll(async () => launcher?.dispose(), 60_000);

  it('enhance of a file that is not an image prints UNSUPPORTED_MEDIA_TYPE and exits 1', async () => {
    const notImage = join(work, 'notes.jpg');
    writeFileSync(notImage, 'these are not the pixels you are looking for\n'.repeat(20));
    const run = await runCli(['enhance', notImage], { env });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^error UNSUPPORTED_MEDIA_TYPE: /m);
  });

  it('status of an unknown job prints JOB_NOT_FOUND and exits 1', async () => {
    const run = await runCli(['status', 'j_00000000000000000000'], { env });
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('error JOB_NOT_FOUND');
  });

  it('status shows a finished job, human readable and as JSON', async () => {
    const input = join(work, 'face.jpg');
    await sharp(SAMPLE(3)).resize({ width: 160 }).jpeg().toFile(input);
    const enhance = await runCli(['enhance', input, '-o', join(work, 'face_out.jpg')], { env, timeoutMs: 120_000 });
    expect(enhance.code, enhance.stderr).toBe(0);
    const id = /job (j_[0-9a-z]{20})/.exec(enhance.stderr)?.[1];
    expect(id).toBeDefined();
    const human = await runCli(['status', id!], { env });
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/^status\s+completed/m);
    expect(human.stdout).toMatch(/^result\s+320x\d+ jpeg/m);
    const json = await runCli(['status', id!, '--json'], { env });
    const view = JSON.parse(json.stdout) as JobView;
    expect(view).toMatchObject({ id, status: 'completed', result: { width: 320, format: 'jpeg' } });
  }, 150_000);

  it('-o photo_enhanced.png writes a PNG (the output name picks the format); a contradicting --format exits 2', async () => {
    const input = join(work, 'portrait.jpg');
    await sharp(SAMPLE(2)).resize({ width: 120 }).jpeg().toFile(input);
    const out = join(work, 'portrait_enhanced.png');
    const run = await runCli(['enhance', input, '-o', out, '--scale', '2'], { env, timeoutMs: 120_000 });
    expect(run.code, run.stderr).toBe(0);
    expect(await sharp(out).metadata()).toMatchObject({ format: 'png', width: 240 });
    const bad = await runCli(['enhance', input, '-o', join(work, 'x.png'), '--format', 'jpeg'], { env });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('contradicts');
  }, 150_000);
});

describe('photoenhance without a gateway', () => {
  it('enhance against a closed port exits 3 with the hint', async () => {
    const input = join(work, 'tiny.png');
    await sharp({ create: { width: 8, height: 8, channels: 3, background: '#808080' } })
      .png()
      .toFile(input);
    const port = await freePort();
    const run = await runCli(['enhance', input, '--url', `http://127.0.0.1:${port}`]);
    expect(run.code).toBe(3);
    expect(run.stderr).toContain(`cannot reach the gateway at http://127.0.0.1:${port}`);
    expect(run.stderr).toContain('is the gateway running? start it with npm start or set PHOTOENHANCE_URL');
  });

  it('usage and input errors exit 2 before anything is sent', async () => {
    const input = join(work, 'tiny2.png');
    await sharp({ create: { width: 8, height: 8, channels: 3, background: '#808080' } })
      .png()
      .toFile(input);
    const badScale = await runCli(['enhance', input, '--scale', '3', '--url', 'http://127.0.0.1:9']);
    expect(badScale.code).toBe(2);
    expect(badScale.stderr).toContain('INVALID_OPTION (--scale)');
    const missing = await runCli(['enhance', join(work, 'nope.jpg')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('no such file');
    const unknownFlag = await runCli(['enhance', input, '--sharpen']);
    expect(unknownFlag.code).toBe(2);
  });
});

describe('enhance honours Retry-After on a busy gateway', () => {
  let server: Server;
  let url: string;
  const posts: Array<{ at: number; key: string | undefined }> = [];

  beforeAll(async () => {
    const png = await sharp({ create: { width: 16, height: 16, channels: 3, background: '#336699' } })
      .png()
      .toBuffer();
    const id = 'j_abcdefghij0123456789';
    // A scripted stand-in for the gateway: the behaviour under test is the client's, and a real gateway cannot be made
    // to answer 503 on cue.
    server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        if (req.method === 'POST' && req.url === '/v1/jobs') {
          posts.push({ at: Date.now(), key: req.headers['idempotency-key'] as string | undefined });
          if (posts.length === 1) {
            res.writeHead(503, { 'content-type': 'application/problem+json', 'retry-after': '1' });
            res.end(JSON.stringify(toProblem('QUEUE_FULL', 'Too many jobs are waiting')));
            return;
          }
          res.writeHead(202, { 'content-type': 'application/json', location: `/v1/jobs/${id}` });
          res.end(
            JSON.stringify({
              id,
              status: 'queued',
              createdAt: new Date().toISOString(),
              links: { self: `/v1/jobs/${id}`, result: `/v1/jobs/${id}/result`, events: `/v1/jobs/${id}/events` },
            }),
          );
        } else if (req.url === `/v1/jobs/${id}`) {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(
            JSON.stringify({
              id,
              status: 'completed',
              progress: 1,
              result: { width: 16, height: 16, format: 'png', bytes: png.length, url: `/v1/jobs/${id}/result`, applied: {} },
            }),
          );
        } else if (req.url === `/v1/jobs/${id}/result`) {
          res.writeHead(200, { 'content-type': 'image/png', 'content-disposition': 'attachment; filename="busy_enhanced.png"' });
          res.end(png);
        } else {
          res.writeHead(404, { 'content-type': 'application/problem+json' });
          res.end(JSON.stringify(toProblem('ROUTE_NOT_FOUND', 'No such route')));
        }
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const addr = server.address();
    url = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('waits exactly Retry-After, resends with the same Idempotency-Key, then downloads', async () => {
    const input = join(work, 'busy.png');
    await sharp({ create: { width: 8, height: 8, channels: 3, background: '#000000' } })
      .png()
      .toFile(input);
    const run = await runCli(['enhance', input, '--url', url]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain('gateway busy (QUEUE_FULL); retrying in 1 s');
    expect(posts).toHaveLength(2);
    expect(posts[1]!.at - posts[0]!.at).toBeGreaterThanOrEqual(1000);
    expect(posts[0]!.key).toBeTruthy();
    expect(posts[1]!.key).toBe(posts[0]!.key);
    expect(run.stdout.trim()).toBe(join(work, 'busy_enhanced.png'));
    expect((await sharp(join(work, 'busy_enhanced.png')).metadata()).width).toBe(16);
  });
});

describe('photoenhance doctor', () => {
  it('passes on this host with the built-in engine only', async () => {
    const run = await runCli(['doctor']);
    expect(run.code, run.stdout).toBe(0);
    expect(run.stdout).toMatch(/✓ node/);
    expect(run.stdout).toMatch(/✓ redis-server/);
    expect(run.stdout).toMatch(/✓ sharp/);
    expect(run.stdout).toMatch(/✓ engine classic/);
  });

  it('marks a missing engine command with how to fix it and exits 1', async () => {
    const config = join(work, 'worker.json');
    writeFileSync(
      config,
      JSON.stringify({ engines: [{ name: 'ghost', kind: 'oneshot', command: ['no-such-enhancer-xyz', '{input}', '{output}'] }] }),
    );
    const run = await runCli(['doctor', '--config', config]);
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/✗ engine ghost\s+no-such-enhancer-xyz not found on PATH/);
    expect(run.stdout).toContain('fix: install no-such-enhancer-xyz');
  });

  const python = spawnSync('python3', ['--version']).status === 0;
  it.skipIf(!python)("runs a Python engine's --check and prints its findings (WORKER_CONFIG)", async () => {
    const script = join(work, 'fake_engine.py');
    writeFileSync(
      script,
      [
        'import json, sys',
        'if "--check" in sys.argv:',
        '    print(json.dumps({"usable": False, "missing": [{"name": "torch", "fix": "pip install torch"}], "device": "cpu"}))',
        '    sys.exit(1)',
      ].join('\n'),
    );
    const config = join(work, 'worker-py.json');
    writeFileSync(config, JSON.stringify({ engines: [{ name: 'fakepy', kind: 'resident', command: ['python3', script] }] }));
    const run = await runCli(['doctor'], { env: cleanEnv({ WORKER_CONFIG: config }) });
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/✗ engine fakepy\s+python3 fake_engine\.py --check: not usable \(exit 1\)/);
    expect(run.stdout).toContain('missing: torch — fix: pip install torch');
  });
});
