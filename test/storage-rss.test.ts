import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createStorage } from '@photoenhance/storage';
import { smallPhoto } from './support/images.js';
import { startTestRedis, type TestRedis } from './support/redis.js';
import { startTestS3, type TestS3 } from './support/s3.js';
import { REPO } from './support/stack.js';

/**
 * Uploads stream from the request to the bucket: a 50 MiB upload to S3 adds only a few MiB to the gateway's RSS
 * (a buffered upload would add at least 50). The gateway runs as its own process so its RSS is its own.
 */
const MiB = 1024 * 1024;
/**
 * Measured idle: +3 MiB. The bound is half the upload: a buffered upload adds at least 50 MiB, while garbage chunks
 * that wait for a scavenge in V8's young generation (semi-spaces of up to 16 MiB each) added up to 18 MiB on a loaded
 * 2-core machine.
 */
const BOUND_MIB = 25;

let redis: TestRedis;
let s3: TestS3;
let gw: ChildProcess | undefined;
let url = '';

beforeAll(async () => {
  redis = await startTestRedis();
  s3 = await startTestS3();
  gw = spawn(process.execPath, ['--import', 'tsx', join(REPO, 'apps/gateway/src/main.ts')], {
    cwd: REPO,
    env: {
      ...process.env,
      ...s3.env('rss'),
      STORAGE_DIR: join(tmpdir(), 'pe-unused'),
      REDIS_URL: redis.url,
      HOST: '127.0.0.1',
      PORT: '0',
      LOG_LEVEL: 'info',
      KNOWN_ENGINES: 'classic',
      ACCEPT_WITHOUT_WORKER: 'true',
      MAX_EVENT_LOOP_DELAY_MS: '0',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  url = await new Promise<string>((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => reject(new Error(`gateway did not start: ${out.slice(-1500)}`)), 50_000);
    const take = (c: Buffer): void => {
      out += c.toString();
      const m = /gateway listening on (http:\/\/[^"\s]+)/.exec(out);
      if (m) {
        clearTimeout(t);
        resolve(m[1]!);
      }
    };
    gw!.stdout!.on('data', take);
    gw!.stderr!.on('data', take);
    gw!.once('exit', () => reject(new Error(`gateway exited: ${out.slice(-1500)}`)));
  });
});

afterAll(async () => {
  if (gw && gw.exitCode === null) {
    const exited = new Promise((r) => gw!.once('exit', r));
    gw.kill('SIGTERM');
    await exited;
  }
  await s3?.close();
  await redis?.close();
});

function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) * 1024;
}

async function upload(body: Buffer): Promise<{ status: number; peak: number }> {
  let peak = 0;
  const timer = setInterval(() => (peak = Math.max(peak, rssOf(gw!.pid!))), 5);
  try {
    const form = new FormData();
    form.append('scale', '1');
    form.append('image', new Blob([body], { type: 'image/jpeg' }), 'big.jpg');
    const r = await fetch(`${url}/v1/jobs`, { method: 'POST', body: form });
    await r.arrayBuffer();
    return { status: r.status, peak: Math.max(peak, rssOf(gw!.pid!)) };
  } finally {
    clearInterval(timer);
  }
}

it('a 50 MiB upload to S3 adds only a few MiB of gateway RSS', async () => {
  const photo = await smallPhoto('jpeg', 320);
  // A real JPEG followed by padding: accepted (decoders stop at the end marker), and 50 MiB on the wire.
  const big = Buffer.concat([photo, Buffer.alloc(50 * MiB - photo.length - 64 * 1024, 0x5a)]);
  // Warm up every code path (multipart upload, inspection) with a smaller upload first.
  expect((await upload(big.subarray(0, 12 * MiB))).status).toBe(202);
  const idle = rssOf(gw!.pid!);
  const { status, peak } = await upload(big);
  expect(status).toBe(202);
  const addedMiB = (peak - idle) / MiB;
  process.stdout.write(
    `gateway RSS: idle ${(idle / MiB).toFixed(1)} MiB, peak during a 50 MiB upload to S3 ${(peak / MiB).toFixed(1)} MiB, +${addedMiB.toFixed(1)} MiB\n`,
  );
  expect(addedMiB).toBeLessThan(BOUND_MIB);
  // And the whole 50 MiB arrived in the bucket.
  const st = await createStorage({ ...s3.settings('rss'), storageDir: '/nonexistent' });
  try {
    const keys = await st.staleJobs(0, Date.now() + 1e9);
    const sizes = await Promise.all(keys.map(async (id) => (await st.stat(`${id}/input.jpg`))?.size));
    expect(sizes).toContain(big.length);
  } finally {
    st.close();
  }
});
