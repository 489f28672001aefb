import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toProblem } from '@photoenhance/contracts';
import { keys } from '@photoenhance/queue';
import { GatewayConfigSchema, type GatewayConfig } from '../apps/gateway/src/config.js';
import { BIN, cleanEnv, runCli } from '../apps/cli/test/launch.js';
import { AdaptiveWindow } from '../apps/cli/src/batch/adaptive-window.js';
import { MANIFEST_NAME, type ManifestEntry } from '../apps/cli/src/batch/manifest.js';
import { planOutputs } from '../apps/cli/src/batch/inputs.js';
import { startTestRedis, type TestRedis } from './support/redis.js';
import { REPO, startGateway, startWorker, until, type RunningGateway, type RunningWorker } from './support/stack.js';

/**
 * `photoenhance batch`, `status` (batches) and `watch` end to end: the real CLI as a child process against the real
 * gateway and a real worker running the fixture engine (resize mode: outputs are real images of the right size).
 */
const fixture = join(REPO, 'test/fixtures/engines/fixture-engine.mjs');
/**
 * Backpressure settings, for a gateway that has them (issue 6): a low queue limit so the CLI meets 503 QUEUE_FULL, and
 * Retry-After kept short (a drain rate measured over 2 s, at most 2 s) so the test does not idle.
 */
const BACKPRESSURE = { maxQueuedJobs: 20, retryAfterMaxSeconds: 2, drainWindowMs: 2000 };
const hasQueueLimit = 'maxQueuedJobs' in GatewayConfigSchema.properties;
const backpressure = Object.fromEntries(Object.entries(BACKPRESSURE).filter(([k]) => k in GatewayConfigSchema.properties));

let work: string;
beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'pe-batch-test-'));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

interface Made {
  rel: string;
  width: number;
  height: number;
  format: 'jpeg' | 'png';
}

/** Tiny photos in nested folders; two share a name in different folders. */
async function makePhotos(root: string, n: number): Promise<Made[]> {
  const dirs = ['', 'a', 'a/b', 'c', 'c/d/e'];
  const made: Made[] = [];
  for (let i = 0; i < n; i++) {
    const format = i % 2 ? 'png' : 'jpeg';
    made.push({
      rel: `${dirs[i % dirs.length]}${dirs[i % dirs.length] ? '/' : ''}p${i}.${format === 'png' ? 'png' : 'jpg'}`,
      width: 8 + (i % 17),
      height: 6 + (i % 11),
      format,
    });
  }
  made.push({ rel: 'a/same.jpg', width: 10, height: 12, format: 'jpeg' }, { rel: 'c/same.jpg', width: 14, height: 9, format: 'jpeg' });
  await Promise.all(
    made.map(async (m, i) => {
      const path = join(root, m.rel);
      mkdirSync(dirname(path), { recursive: true });
      const img = sharp({
        create: { width: m.width, height: m.height, channels: 3, background: { r: (i * 37) % 256, g: (i * 91) % 256, b: 120 } },
      });
      await (m.format === 'png' ? img.png() : img.jpeg()).toFile(path);
    }),
  );
  return made;
}

function outputsIn(dir: string): string[] {
  try {
    return (readdirSync(dir, { recursive: true }) as string[]).filter((f) => /_enhanced\.(jpg|png)$/.test(f));
  } catch {
    return [];
  }
}

function manifestEntries(out: string): Map<string, ManifestEntry> {
  const entries = new Map<string, ManifestEntry>();
  for (const line of readFileSync(join(out, MANIFEST_NAME), 'utf8').split('\n')) {
    try {
      const rec = JSON.parse(line) as ManifestEntry & { type?: string };
      if (rec.type !== 'header' && rec.rel) entries.set(rec.rel, rec);
    } catch {
      // torn last line after SIGKILL
    }
  }
  return entries;
}

interface Summary {
  photos: number;
  done: number;
  doneThisRun: number;
  alreadyDone: number;
  reattached: number;
  submitted: number;
  failed: Array<{ rel: string; code: string }>;
  skipped: Array<{ rel: string; reason: string }>;
  busy: { total: number; byCode: Record<string, number> };
  window: { decreases: number; max: number };
  exitCode: number;
}

describe('photoenhance batch against a real gateway and worker', () => {
  let redis: TestRedis;
  let gw: RunningGateway;
  let worker: RunningWorker;
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    redis = await startTestRedis();
    const overrides = { defaultEngine: 'fixture', knownEngines: ['fixture', 'paced'], ...backpressure };
    gw = await startGateway(redis.url, overrides as Partial<GatewayConfig>);
    const cfg = join(work, 'worker.json');
    writeFileSync(
      cfg,
      JSON.stringify({
        engines: [
          { name: 'fixture', command: [process.execPath, fixture, '--mode', 'resize', '--delay-ms', '20'], poolSize: 3 },
          // Slower than any CLI can submit, however loaded the machine: the queue limit is always met.
          { name: 'paced', command: [process.execPath, fixture, '--mode', 'resize', '--delay-ms', '150'], poolSize: 1 },
        ],
      }),
    );
    worker = await startWorker({
      REDIS_URL: redis.url,
      STORAGE_DIR: gw.storageDir,
      WORKER_CONFIG: cfg,
      HOST_ID: 'batch-host',
      LOG_LEVEL: 'warn',
    });
    await until(
      'the worker to announce itself',
      async () => ((await (await fetch(`${gw.url}/v1/system`)).json()) as { hosts: unknown[] }).hosts.length > 0,
      60_000,
      100,
    );
    env = cleanEnv({ PHOTOENHANCE_URL: gw.url });
  }, 90_000);

  afterAll(async () => {
    await worker?.stop();
    await gw?.close();
    await redis?.close();
    if (gw) rmSync(gw.storageDir, { recursive: true, force: true });
  }, 60_000);

  it('finishes a 212-photo batch killed halfway (SIGKILL) on the rerun, each photo submitted once', async () => {
    const src = join(work, 'shots');
    const out = join(work, 'shots-out');
    const made = await makePhotos(src, 210);
    const args = [BIN, 'batch', src, '--out', out, '--scale', '2', '--json'];

    // First run: killed without warning once a third of the results are in.
    const first = spawn(process.execPath, args, { env, cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    let firstErr = '';
    first.stderr.on('data', (d: Buffer) => (firstErr += d.toString()));
    const firstExit = new Promise<number | null>((r) => first.once('exit', (code) => r(code)));
    await until('70 outputs before the kill', () => outputsIn(out).length >= 70 || first.exitCode !== null, 120_000, 20).catch(
      (err: Error) => {
        first.kill('SIGKILL');
        throw new Error(`${err.message}; the CLI said:\n${firstErr.slice(-2000)}`);
      },
    );
    first.kill('SIGKILL');
    await firstExit;
    const atKill = manifestEntries(out);
    const outputsAtKill = outputsIn(out).length;
    expect(outputsAtKill).toBeLessThan(made.length);
    // Answers possibly lost by the kill: photos recorded as `submitting` (sent, no job id recorded).
    const lostAnswers = [...atKill.values()].filter((e) => e.state === 'submitting').length;

    const rerun = await runCli(args.slice(1), { env, timeoutMs: 180_000 });
    expect(rerun.code, rerun.stderr + rerun.stdout.slice(0, 3000)).toBe(0);
    const summary = JSON.parse(rerun.stdout) as Summary;
    expect(summary).toMatchObject({ photos: made.length, done: made.length, failed: [], skipped: [], exitCode: 0 });
    // Everything the manifest recorded as done is skipped. (An output renamed into place just before the kill, whose
    // `done` line was not yet written, is fetched again from its job: re-attached, not resubmitted.)
    expect(summary.alreadyDone).toBeGreaterThanOrEqual([...atKill.values()].filter((e) => e.state === 'done').length);
    expect(summary.alreadyDone + summary.doneThisRun).toBe(made.length);

    // Every output present, decodable, the right size and format, at <rel dir>/<stem>_enhanced.<ext>.
    for (const m of made) {
      const rel = m.rel.replace(/\.(jpg|png)$/, (_x, ext: string) => `_enhanced.${ext}`);
      const meta = await sharp(join(out, rel)).metadata();
      expect({ rel, w: meta.width, h: meta.height, f: meta.format }).toEqual({ rel, w: m.width * 2, h: m.height * 2, f: m.format });
    }
    expect(outputsIn(out)).toHaveLength(made.length);
    expect(readdirSync(out, { recursive: true }).filter((f) => String(f).endsWith('.part'))).toEqual([]);

    // Each photo has exactly one job in the manifest, and the gateway holds no more jobs than photos, apart from
    // submissions whose answer the kill may have lost.
    const final = manifestEntries(out);
    const ids = new Set([...final.values()].map((e) => e.jobId));
    expect([...final.values()].every((e) => e.state === 'done')).toBe(true);
    expect(ids.size).toBe(made.length);
    const r = redis.client();
    const jobsOnGateway = (await r.keys(keys.record('*'))).length;
    expect(jobsOnGateway).toBeGreaterThanOrEqual(made.length);
    expect(jobsOnGateway - made.length).toBeLessThanOrEqual(lostAnswers);
    for (const e of atKill.values()) {
      if (e.state === 'queued' || e.state === 'done')
        expect(final.get(e.rel)?.jobId, `${e.rel} was re-attached, not resubmitted`).toBe(e.jobId);
    }

    // A third run finds everything done and sends nothing.
    const again = await runCli(args.slice(1), { env, timeoutMs: 60_000 });
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ done: made.length, alreadyDone: made.length, submitted: 0 });
    expect((await r.keys(keys.record('*'))).length).toBe(jobsOnGateway);
  }, 240_000);

  it('Ctrl-C stops submitting, saves the manifest and exits 130; the rerun re-attaches to the running jobs', async () => {
    const src = join(work, 'interrupted');
    const out = join(src, 'enhanced'); // inside the source folder: never taken as input
    const made = await makePhotos(src, 118);
    const args = [BIN, 'batch', src, '--out', out, '--json'];
    const run = spawn(process.execPath, args, { env, cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    run.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    run.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((r) => run.once('close', (code) => r(code)));
    await until('10 outputs', () => outputsIn(out).length >= 10 || run.exitCode !== null, 120_000, 20);
    run.kill('SIGINT');
    expect(await exited, stderr).toBe(130);
    const stopped = JSON.parse(stdout) as Summary & { interrupted: boolean; unfinished: number };
    expect(stopped).toMatchObject({ interrupted: true, exitCode: 130, failed: [] });
    expect(stopped.unfinished).toBeGreaterThan(0);
    expect(stderr).toContain('run the same command again to resume');
    expect(readdirSync(out)).not.toContain('.photoenhance-batch.lock');
    const atStop = manifestEntries(out);
    const running = [...atStop.values()].filter((e) => e.state === 'queued').length;
    const unanswered = [...atStop.values()].filter((e) => e.state === 'submitting').length;

    const r = redis.client();
    const before = (await r.keys(keys.record('*'))).length;
    const rerun = await runCli(args.slice(1), { env, timeoutMs: 120_000 });
    expect(rerun.code, rerun.stderr).toBe(0);
    const summary = JSON.parse(rerun.stdout) as Summary;
    expect(summary).toMatchObject({ photos: made.length, done: made.length, reattached: running });
    expect(summary.submitted).toBe(made.length - [...atStop.values()].filter((e) => e.jobId).length);
    expect((await r.keys(keys.record('*'))).length - before).toBeLessThanOrEqual(summary.submitted);
    expect(unanswered).toBeLessThanOrEqual(summary.submitted);
  }, 240_000);

  it.runIf(hasQueueLimit)(
    'meets the queue limit with 503 QUEUE_FULL and adapts its window',
    async () => {
      const src = join(work, 'flood');
      const out = join(work, 'flood-out');
      await makePhotos(src, 40);
      const run = await runCli(['batch', src, '--out', out, '--json', '--quiet', '--engine', 'paced'], { env, timeoutMs: 180_000 });
      expect(run.code, run.stderr).toBe(0);
      const summary = JSON.parse(run.stdout) as Summary;
      expect(summary.done).toBe(42);
      expect(summary.busy.byCode.QUEUE_FULL ?? 0).toBeGreaterThan(0);
      expect(summary.window.decreases).toBeGreaterThan(0);
    },
    200_000,
  );

  it('fails a non-image with its code, skips other files, exits 1; prints the table', async () => {
    const src = join(work, 'mixed');
    const out = join(work, 'mixed-out');
    await makePhotos(src, 3);
    writeFileSync(join(src, 'notes.jpg'), 'these are not the pixels you are looking for\n'.repeat(20));
    writeFileSync(join(src, 'readme.txt'), 'not a photo');
    const json = await runCli(['batch', src, '--out', out, '--json'], { env, timeoutMs: 60_000 });
    expect(json.code, json.stderr + json.stdout).toBe(1);
    const summary = JSON.parse(json.stdout) as Summary;
    expect(summary.done).toBe(5);
    expect(summary.failed).toEqual([expect.objectContaining({ rel: 'notes.jpg', code: 'UNSUPPORTED_MEDIA_TYPE' })]);
    expect(summary.skipped).toEqual([expect.objectContaining({ rel: 'readme.txt' })]);

    // Rerun, human readable: the done photos are left alone, the failed one is tried again (and fails again).
    const human = await runCli(['batch', src, '--out', out], { env, timeoutMs: 60_000 });
    expect(human.code).toBe(1);
    expect(human.stdout).toMatch(/^done\s+5 of 6 \(5 by an earlier run\)$/m);
    expect(human.stdout).toMatch(/^failed\s+1$/m);
    expect(human.stdout).toMatch(/^\s+UNSUPPORTED_MEDIA_TYPE ×1: notes\.jpg$/m);
    expect(human.stdout).toMatch(/^skipped\s+1$/m);
    expect(human.stdout).toContain('readme.txt');
  }, 90_000);

  it('refuses to resume a folder made with other options (exit 2)', async () => {
    const src = join(work, 'mixed');
    const run = await runCli(['batch', src, '--out', join(work, 'mixed-out'), '--scale', '4'], { env });
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('holds a batch made with other options');
  });

  it('status of a real batch (POST /v1/batches) prints its counts', async () => {
    const form = new FormData();
    for (const [i, w] of [20, 24].entries()) {
      const img = await sharp({ create: { width: w, height: 16, channels: 3, background: '#448' } })
        .png()
        .toBuffer();
      form.append('images', new Blob([img], { type: 'image/png' }), `item${i}.png`);
    }
    const res = await fetch(`${gw.url}/v1/batches`, { method: 'POST', body: form });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    await until(
      'the batch to finish',
      async () => ((await (await fetch(`${gw.url}/v1/batches/${id}`)).json()) as { status: string }).status === 'completed',
      30_000,
      100,
    );
    const run = await runCli(['status', id], { env });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(new RegExp(`^batch\\s+${id}$`, 'm'));
    expect(run.stdout).toMatch(/^status\s+completed$/m);
    expect(run.stdout).toMatch(/^items\s+2 total: 2 completed$/m);
    const json = await runCli(['status', id, '--json'], { env });
    expect(JSON.parse(json.stdout)).toMatchObject({ id, total: 2 });
  });

  it('watch --once prints the hosts and the queue figures', async () => {
    const run = await runCli(['watch', '--once'], { env });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^queue\s+.*engine processes \d+ busy, \d+ idle/m);
    expect(run.stdout).toMatch(/^engines\s+.*fixture\* pool 3 on 1 host/m);
    expect(run.stdout).toMatch(/^hosts\s+1$/m);
    expect(run.stdout).toMatch(/^ {2}batch-host {2}admitting {2}mem \d+% used/m);
    const json = await runCli(['watch', '--once', '--json'], { env });
    expect(JSON.parse(json.stdout)).toMatchObject({
      hosts: [expect.objectContaining({ hostId: 'batch-host' })],
      processes: expect.any(Object),
    });
  });
});

describe('batch honours Retry-After exactly (scripted gateway)', () => {
  let server: Server;
  let url: string;
  const posts: Array<{ at: number; key: string }> = [];
  const busySentAt: number[] = [];
  const png = sharp({ create: { width: 16, height: 16, channels: 3, background: '#336699' } })
    .png()
    .toBuffer();

  beforeAll(async () => {
    const body = await png;
    let n = 0;
    // A stand-in for the gateway: a real one cannot be made to answer 503 on cue. POSTs 6 and 7 get 503 Retry-After: 1.
    server = createServer((req, res) => {
      const arrivedAt = Date.now();
      req.resume();
      req.on('end', () => {
        const json = (status: number, obj: unknown, headers: Record<string, string> = {}): void => {
          res.writeHead(status, { 'content-type': status >= 400 ? 'application/problem+json' : 'application/json', ...headers });
          res.end(JSON.stringify(obj));
        };
        const m = /^\/v1\/jobs\/(j_[0-9a-z]{20})(\/result)?$/.exec(req.url ?? '');
        if (req.method === 'GET' && req.url === '/healthz') return json(200, { status: 'ok' });
        if (req.method === 'POST' && req.url === '/v1/jobs') {
          posts.push({ at: arrivedAt, key: String(req.headers['idempotency-key']) });
          n++;
          if (n === 6 || n === 7) {
            busySentAt.push(Date.now());
            return json(503, toProblem('QUEUE_FULL', 'Too many jobs are waiting'), { 'retry-after': '1' });
          }
          const id = `j_${String(n).padStart(20, '0')}`;
          return json(202, {
            id,
            status: 'queued',
            createdAt: new Date().toISOString(),
            links: { self: `/v1/jobs/${id}`, result: `/v1/jobs/${id}/result`, events: '' },
          });
        }
        if (req.method === 'GET' && m && !m[2])
          return json(200, {
            id: m[1],
            status: 'completed',
            progress: 1,
            result: { width: 16, height: 16, format: 'png', bytes: body.length, url: `/v1/jobs/${m[1]}/result`, applied: {} },
          });
        if (req.method === 'GET' && m && m[2]) {
          res.writeHead(200, { 'content-type': 'image/png' });
          return res.end(body);
        }
        if (req.method === 'GET' && req.url === '/v1/batches/b_abcdefghij0123456789') {
          return json(200, {
            id: 'b_abcdefghij0123456789',
            status: 'partial',
            total: 3,
            counts: { queued: 0, active: 0, completed: 2, failed: 1, canceled: 0 },
            progress: 1,
            engine: 'classic',
            options: { scale: 2 },
            createdAt: '2025-01-01T00:00:00.000Z',
            updatedAt: '2025-01-01T00:00:05.000Z',
            items: [
              { index: 0, name: 'a.jpg', status: 'completed' },
              { index: 1, name: 'b.jpg', status: 'completed' },
              { index: 2, name: 'c.jpg', status: 'failed', error: { code: 'ENGINE_FAILED', message: 'boom' } },
            ],
            links: { self: '/v1/batches/b_abcdefghij0123456789', results: '/v1/batches/b_abcdefghij0123456789/results.zip', events: '' },
          });
        }
        return json(404, toProblem('ROUTE_NOT_FOUND', 'No such route'));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const addr = server.address();
    url = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('sends nothing until Retry-After has passed and resends with the same key', async () => {
    const src = join(work, 'scripted');
    mkdirSync(src, { recursive: true });
    const body = await png;
    for (let i = 0; i < 12; i++) writeFileSync(join(src, `s${String(i).padStart(2, '0')}.png`), body);
    // One submission at a time, so every POST after a 503 was sent after the client read it: none may come early.
    const run = await runCli(['batch', src, '--out', join(work, 'scripted-out'), '--url', url, '--json', '--concurrency-max', '1'], {
      timeoutMs: 60_000,
    });
    expect(run.code, run.stderr).toBe(0);
    const summary = JSON.parse(run.stdout) as Summary;
    expect(summary).toMatchObject({ done: 12, submitted: 12, busy: { total: 2, byCode: { QUEUE_FULL: 2 } } });
    expect(summary.window.decreases).toBe(2);
    expect(posts).toHaveLength(14);
    for (const sent of busySentAt) {
      const early = posts.filter((p) => p.at > sent && p.at < sent + 1000);
      expect(early, `POSTs within Retry-After of the 503 sent at ${sent}`).toEqual([]);
    }
    expect(posts[6]!.at - busySentAt[0]!).toBeGreaterThanOrEqual(1000);
    expect(posts[7]!.at - busySentAt[1]!).toBeGreaterThanOrEqual(1000);
    // The refused photos were resent with the same Idempotency-Key: one key per photo.
    expect(new Set(posts.map((p) => p.key)).size).toBe(12);
  }, 90_000);

  it('status shows a batch (b_ id), defensively, and exits 1 when it ended partial', async () => {
    const run = await runCli(['status', 'b_abcdefghij0123456789', '--url', url]);
    expect(run.code, run.stderr).toBe(1);
    expect(run.stdout).toMatch(/^batch\s+b_abcdefghij0123456789$/m);
    expect(run.stdout).toMatch(/^status\s+partial$/m);
    expect(run.stdout).toMatch(/^items\s+3 total: 2 completed, 1 failed$/m);
    expect(run.stdout).toMatch(/^ {2}c\.jpg {2}ENGINE_FAILED: boom$/m);
    expect(run.stdout).toContain(`${url}/v1/batches/b_abcdefghij0123456789/results.zip`);
  });
});

describe('batch building blocks', () => {
  it('the adaptive window: slow start, one decrease per round, slow probing past the last ceiling, exact Retry-After', () => {
    const w = new AdaptiveWindow({ max: 32, initial: 2 });
    for (let i = 0; i < 10; i++) w.onAccepted();
    expect(w.limit).toBe(12);
    w.onBusy(1000, 1010, 3);
    expect(w.limit).toBe(8); // 12 × 0.7
    expect(w.pausedUntil).toBe(4010);
    w.onBusy(1005, 1012, 1); // sent before the decrease: same round
    expect(w.limit).toBe(8);
    expect(w.pausedUntil).toBe(4010);
    const acceptsUntil = (limit: number): number => {
      let n = 0;
      while (w.limit < limit) {
        w.onAccepted();
        n++;
      }
      return n;
    };
    const recover = acceptsUntil(11); // about +1 per window's worth, back to just below the ceiling (12)
    expect(recover).toBeGreaterThan(20);
    expect(recover).toBeLessThan(35);
    expect(acceptsUntil(13)).toBeGreaterThan(80); // beyond it: a quarter of that pace
    w.onBusy(5000, 5001, undefined);
    expect(w.limit).toBe(9);
    expect(w.pausedUntil).toBe(6001);
    expect(w.pausedMs).toBe(3000 + 1000 - 0);
    for (let i = 0; i < 10; i++) w.onBusy(10_000 + i * 2, 10_001 + i * 2, 0);
    expect(w.limit).toBe(1);
    expect(w.decreases).toBe(12);
  });

  it('output names keep relative folders and never collide', () => {
    const photos = ['a/x.jpg', 'b/x.jpg', 'a/y.jpg', 'a/y.png', 'z.tiff'].map((rel) => ({ abs: rel, rel, size: 1, mtimeMs: 1 }));
    expect(Object.fromEntries(planOutputs(photos, 'auto'))).toEqual({
      'a/x.jpg': 'a/x_enhanced.jpg',
      'b/x.jpg': 'b/x_enhanced.jpg',
      'a/y.jpg': 'a/y_enhanced.jpg',
      'a/y.png': 'a/y_enhanced.png',
      'z.tiff': 'z_enhanced.png',
    });
    expect(Object.fromEntries(planOutputs(photos, 'png'))).toMatchObject({
      'a/y.jpg': 'a/y_jpg_enhanced.png',
      'a/y.png': 'a/y_png_enhanced.png',
      'a/x.jpg': 'a/x_enhanced.png',
    });
  });
});
