import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PARTIAL_DIR } from '@photoenhance/storage';
import { smallPhoto } from './support/images.js';
import { startTestRedis, type TestRedis } from './support/redis.js';
import { startTestS3, type TestS3 } from './support/s3.js';
import { REPO, startGateway, until, type RunningGateway } from './support/stack.js';
import { loadGatewayConfig } from '../apps/gateway/src/config.js';
import { loadWorkerConfig } from '../apps/worker/src/config.js';

/**
 * Start-up: bad storage configuration stops the gateway and the worker with a message naming the variable, within a
 * bounded time; uploads a killed gateway left half-written are removed at the next start, a live gateway's are not.
 */
let redis: TestRedis;
let s3: TestS3;
let silent: Server;
const sockets: Socket[] = [];
/** Every child started here, stopped in afterAll whatever happened. */
const children: ChildProcess[] = [];
const dirs: string[] = [];

beforeAll(async () => {
  redis = await startTestRedis();
  s3 = await startTestS3();
  // Accepts connections and never answers: the check must give up by itself.
  silent = createServer((s) => sockets.push(s));
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
});

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const s of sockets) s.destroy();
  silent?.close();
  await s3?.close();
  await redis?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function run(
  app: 'gateway' | 'worker',
  env: Record<string, string>,
): { proc: ChildProcess; output: () => string; exited: Promise<number | null>; listening: Promise<string> } {
  const proc = spawn(process.execPath, ['--import', 'tsx', join(REPO, `apps/${app}/src/main.ts`)], {
    cwd: REPO,
    env: {
      ...process.env,
      REDIS_URL: redis.url,
      HOST: '127.0.0.1',
      PORT: '0',
      LOG_LEVEL: 'info',
      ENFORCEMENT: 'watchdog',
      WORKER_CONFIG: '',
      MAX_EVENT_LOOP_DELAY_MS: '0',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(proc);
  let out = '';
  let onLine: (() => void) | undefined;
  const take = (c: Buffer): void => {
    out += c.toString();
    onLine?.();
  };
  proc.stdout!.on('data', take);
  proc.stderr!.on('data', take);
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  const listening = new Promise<string>((resolve, reject) => {
    onLine = () => {
      const m = /gateway listening on (http:\/\/[^"\s]+)/.exec(out);
      if (m) resolve(m[1]!);
    };
    void exited.then(() => reject(new Error(`exited: ${out.slice(-1500)}`)));
  });
  listening.catch(() => undefined);
  return { proc, output: () => out, exited, listening };
}

const bounded = <T>(p: Promise<T>, ms: number, what: string): Promise<T> =>
  Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms))]);

describe('bad storage configuration is a start-up error naming the variable', () => {
  const base = (): Record<string, string> => ({ ...s3.env(), STORAGE_CHECK_TIMEOUT_MS: '1500', STORAGE_DIR: join(tmpdir(), 'pe-unused') });
  const cases: Array<[string, () => Record<string, string>, RegExp]> = [
    [
      'missing bucket',
      () => ({ ...base(), STORAGE_URL: 's3://no-such-bucket/p' }),
      /STORAGE_URL.*no-such-bucket|no-such-bucket.*STORAGE_URL/,
    ],
    ['rejected credentials', () => ({ ...base(), AWS_ACCESS_KEY_ID: 'NOT-OUR-KEY' }), /AWS_ACCESS_KEY_ID/],
    ['unreachable endpoint', () => ({ ...base(), S3_ENDPOINT: 'http://127.0.0.1:9' }), /S3_ENDPOINT/],
    [
      'endpoint that never answers',
      () => ({ ...base(), S3_ENDPOINT: `http://127.0.0.1:${(silent.address() as { port: number }).port}` }),
      /S3_ENDPOINT.*1500 ms/,
    ],
  ];
  for (const [what, env, expected] of cases) {
    it(`${what}: gateway and worker refuse to start`, async () => {
      const gw = run('gateway', env());
      const worker = run('worker', env());
      const [gwCode, workerCode] = await bounded(Promise.all([gw.exited, worker.exited]), 40_000, 'refusing to start');
      expect(gwCode, gw.output()).not.toBe(0);
      expect(workerCode, worker.output()).not.toBe(0);
      expect(gw.output()).toMatch(expected);
      expect(worker.output()).toMatch(expected);
    });
  }
});

it('settings that cannot work are configuration errors naming the variable, before anything connects', () => {
  const redisUrl = 'redis://127.0.0.1:1';
  for (const load of [
    (env: Record<string, string>) => loadGatewayConfig({ env: { REDIS_URL: redisUrl, ...env } }),
    (env: Record<string, string>) => loadWorkerConfig({ env: { REDIS_URL: redisUrl, ...env } }),
  ]) {
    expect(() => load({ STORAGE_URL: 's3://Bad_Bucket/x' })).toThrow(/STORAGE_URL/);
    expect(() => load({ STORAGE_URL: 's3://good-bucket/x', AWS_ACCESS_KEY_ID: 'k' })).toThrow(/AWS_SECRET_ACCESS_KEY/);
    expect(() => load({ STORAGE_URL: 's3://good-bucket/x', S3_ENDPOINT: 'minio:9000' })).toThrow(/S3_ENDPOINT/);
    expect(() => load({ STORAGE_URL: 's3://good-bucket/x', S3_FORCE_PATH_STYLE: 'maybe' })).toThrow(/S3_FORCE_PATH_STYLE/);
  }
  expect(() => loadGatewayConfig({ env: { REDIS_URL: redisUrl, RESULT_REDIRECT: 'presigned' } })).toThrow(
    /RESULT_REDIRECT=presigned needs object storage/,
  );
  expect(
    loadGatewayConfig({ env: { REDIS_URL: redisUrl, STORAGE_URL: 's3://good-bucket/x', RESULT_REDIRECT: 'presigned' } }).resultRedirect,
  ).toBe('presigned');
});

/** A multipart upload written by hand, so the test decides when the rest of the file arrives. */
function slowUpload(
  url: string,
  total: number,
): { sendRest(): void; abort(): void; response: Promise<{ status: number; body: string }>; sendFirst(head: Buffer): void } {
  const boundary = '----pe-slow-upload';
  const u = new URL(`${url}/v1/jobs`);
  const pre = Buffer.from(
    `--${boundary}\r\ncontent-disposition: form-data; name="scale"\r\n\r\n1\r\n--${boundary}\r\ncontent-disposition: form-data; name="image"; filename="slow.jpg"\r\ncontent-type: image/jpeg\r\n\r\n`,
  );
  const post = Buffer.from(`\r\n--${boundary}--\r\n`);
  const req = request({
    host: u.hostname,
    port: u.port,
    path: u.pathname,
    method: 'POST',
    headers: { 'content-type': `multipart/form-data; boundary=${boundary}`, 'content-length': pre.length + total + post.length },
  });
  let sent = 0;
  const response = new Promise<{ status: number; body: string }>((resolve, reject) => {
    req.on('response', (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
  });
  response.catch(() => undefined);
  return {
    response,
    sendFirst(head: Buffer) {
      req.write(pre);
      req.write(head);
      sent = head.length;
    },
    sendRest() {
      req.end(Buffer.concat([Buffer.alloc(total - sent), post]));
    },
    abort() {
      req.destroy();
    },
  };
}

describe('partial uploads of a killed gateway', () => {
  let dir: string;
  let live: RunningGateway | undefined;
  afterAll(async () => {
    await live?.close();
  });

  it("are removed at the next start; a live gateway's upload in progress is kept and completes", async () => {
    dir = mkdtempSync(join(tmpdir(), 'pe-partials-'));
    live = undefined;
    dirs.push(dir);
    const partials = (): string[] => (existsSync(join(dir, PARTIAL_DIR)) ? readdirSync(join(dir, PARTIAL_DIR)) : []);
    // A real JPEG head, then zeros: enough to start writing; the rest never comes.
    const photo = await smallPhoto('jpeg', 320);
    const total = photo.length + 4 * 1024 * 1024;

    // A gateway of this process, running all along.
    live = await startGateway(redis.url, { knownEngines: ['classic'], maxEventLoopDelayMs: 0 }, dir);
    const doomed = run('gateway', { STORAGE_DIR: dir, KNOWN_ENGINES: 'classic' });
    const doomedUrl = await bounded(doomed.listening, 40_000, 'gateway start');
    const first = slowUpload(doomedUrl, total);
    first.sendFirst(photo);
    const [left] = await until(
      'the upload is being written',
      async () => {
        const early = await Promise.race([first.response, new Promise((r) => setTimeout(r, 1))]);
        if (early) throw new Error(`answered early: ${JSON.stringify(early)}; ${doomed.output().slice(-1000)}`);
        return partials().length === 1 ? partials() : undefined;
      },
      30_000,
      20,
    );
    doomed.proc.kill('SIGKILL');
    await doomed.exited;
    first.abort();
    expect(partials()).toEqual([left]);

    // The live gateway is uploading right now...
    const second = slowUpload(live.url, total);
    second.sendFirst(photo);
    await until('the live upload is being written', () => (partials().length === 2 ? true : undefined), 30_000, 20);
    const inFlight = partials().filter((n) => n !== left);

    // ...when another gateway starts on the same folder: the dead one's partial goes, the live one's stays.
    const next = await startGateway(redis.url, { knownEngines: ['classic'], maxEventLoopDelayMs: 0 }, dir);
    try {
      expect(partials()).toEqual(inFlight);
      second.sendRest();
      const r = await second.response;
      expect(r.status, r.body).toBe(202);
      expect(partials()).toEqual([]);
    } finally {
      await next.close();
    }
  });
});
