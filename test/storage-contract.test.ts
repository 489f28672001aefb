import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type LocalStorage,
  PARTIAL_DIR,
  StorageConfigError,
  StorageUnavailableError,
  UploadTooLargeError,
  createStorage,
  ownerTag,
  type Storage,
} from '@photoenhance/storage';
import { startTestS3, type TestS3 } from './support/s3.js';

/**
 * One contract, two implementations: every case runs against LocalStorage (a temp folder) and S3Storage (a real s3rver
 * process on a loopback port).
 */
let s3: TestS3;
const dirs: string[] = [];
const storages: Storage[] = [];

beforeAll(async () => {
  s3 = await startTestS3();
});
afterAll(async () => {
  for (const s of storages) s.close();
  await s3?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'pe-contract-'));
  dirs.push(d);
  return d;
}

const backends: Array<[string, () => Promise<Storage>]> = [
  ['local', () => createStorage({ storageDir: tempDir() })],
  ['s3', () => createStorage({ ...s3.settings(`p${Math.random().toString(36).slice(2, 8)}`), storageDir: '/nonexistent' })],
];

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** A source that counts how many chunks were pulled from it. */
function countingSource(chunk: Buffer, count: number): { stream: Readable; pulled: () => number } {
  let pulled = 0;
  const stream = Readable.from(
    (function* () {
      for (let i = 0; i < count; i++) {
        pulled++;
        yield chunk;
      }
    })(),
  );
  return { stream, pulled: () => pulled };
}

const MiB = 1024 * 1024;

describe.each(backends)('storage contract: %s', (kind, make) => {
  let st: Storage;
  beforeAll(async () => {
    st = await make();
    storages.push(st);
    await st.check(5000);
  });

  it('streams a write (head first, every byte hashed) and reads it back whole and by range', async () => {
    const body = Buffer.alloc(6 * MiB + 123);
    for (let i = 0; i < body.length; i++) body[i] = (i * 31) & 0xff;
    const head = Buffer.from('HEAD');
    const hash = createHash('sha256');
    const bytes = await st.writeStream('j_a/input.jpg', Readable.from([body.subarray(0, 1000), body.subarray(1000)]), {
      limit: 50 * MiB,
      head,
      hash,
    });
    const whole = Buffer.concat([head, body]);
    expect(bytes).toBe(whole.length);
    expect(hash.digest('hex')).toBe(createHash('sha256').update(whole).digest('hex'));
    const info = await st.stat('j_a/input.jpg');
    expect(info?.size).toBe(whole.length);
    expect(info?.etag).toMatch(/^".+"$/);
    const r = await st.openRead('j_a/input.jpg');
    expect(r?.size).toBe(whole.length);
    expect(r?.etag).toBe(info?.etag);
    expect((await readAll(r!.stream)).equals(whole)).toBe(true);
    const part = await st.openRead('j_a/input.jpg', { range: { start: 5 * MiB, end: 5 * MiB + 99 } });
    expect(part?.size).toBe(whole.length);
    expect((await readAll(part!.stream)).equals(whole.subarray(5 * MiB, 5 * MiB + 100))).toBe(true);
  });

  it('aborts past the byte limit without reading the rest, and publishes nothing', async () => {
    const src = countingSource(Buffer.alloc(MiB, 1), 200);
    await expect(st.writeStream('j_big/input.jpg', src.stream, { limit: 7 * MiB })).rejects.toBeInstanceOf(UploadTooLargeError);
    // 200 MiB offered: stopped soon after the 7 MiB limit (a part in flight plus stream buffers at most).
    expect(src.pulled()).toBeLessThan(30);
    expect(await st.stat('j_big/input.jpg')).toBeUndefined();
    await expect(
      st.writeStream('j_big2/input.jpg', Readable.from([Buffer.alloc(10)]), { limit: 4, head: Buffer.alloc(5) }),
    ).rejects.toBeInstanceOf(UploadTooLargeError);
    expect(await st.stat('j_big2/input.jpg')).toBeUndefined();
  });

  it('a source that fails mid-way publishes nothing', async () => {
    const failing = Readable.from(
      (function* () {
        yield Buffer.alloc(1000, 2);
        throw new Error('client went away');
      })(),
    );
    await expect(st.writeStream('j_fail/input.jpg', failing, { limit: MiB })).rejects.toThrow(/client went away/);
    expect(await st.stat('j_fail/input.jpg')).toBeUndefined();
  });

  it('commits a local file atomically (putFile), replacing an older one; downloads to a file', async () => {
    const dir = tempDir();
    const f = join(dir, 'out.png');
    writeFileSync(f, Buffer.alloc(3000, 9));
    const info = await st.putFile('j_b/output.png', f, { contentType: 'image/png' });
    expect(info.size).toBe(3000);
    writeFileSync(f, Buffer.alloc(10, 8));
    expect((await st.putFile('j_b/output.png', f)).size).toBe(10);
    const copy = join(dir, 'copy.png');
    expect(await st.downloadTo('j_b/output.png', copy)).toBe(true);
    expect(readFileSync(copy).equals(Buffer.alloc(10, 8))).toBe(true);
    expect(await st.downloadTo('j_b/missing.png', join(dir, 'none'))).toBe(false);
    expect(existsSync(join(dir, 'none'))).toBe(false);
  });

  it('missing objects are undefined, not errors', async () => {
    expect(await st.stat('j_nope/input.jpg')).toBeUndefined();
    expect(await st.openRead('j_nope/input.jpg')).toBeUndefined();
  });

  it('removes one job and only that one; lists stale jobs by their newest file', async () => {
    await st.writeStream('j_c/input.jpg', Readable.from([Buffer.alloc(10)]), { limit: 100 });
    await st.writeStream('j_c/thumb-input.webp', Readable.from([Buffer.alloc(10)]), { limit: 100 });
    await st.writeStream('j_d/input.jpg', Readable.from([Buffer.alloc(10)]), { limit: 100 });
    const now = Date.now();
    expect((await st.staleJobs(60_000, now)).filter((id) => id === 'j_c' || id === 'j_d')).toEqual([]);
    expect((await st.staleJobs(60_000, now + 120_000)).filter((id) => id === 'j_c' || id === 'j_d').sort()).toEqual(['j_c', 'j_d']);
    await st.removeJob('j_c');
    expect(await st.stat('j_c/input.jpg')).toBeUndefined();
    expect(await st.stat('j_c/thumb-input.webp')).toBeUndefined();
    expect(await st.stat('j_d/input.jpg')).toBeDefined();
    await st.removeJob('j_c'); // idempotent
    expect(await st.staleJobs(60_000, now + 120_000)).not.toContain('j_c');
  });

  it('refuses keys that leave the root', async () => {
    await expect(st.writeStream('../evil', Readable.from([Buffer.alloc(1)]), { limit: 10 })).rejects.toThrow(/invalid storage key/);
  });

  if (kind === 'local') {
    it('a write after the partial-upload folder was removed recreates it (it is not made once per write)', async () => {
      const root = (st as LocalStorage).root;
      await st.writeStream('j_p1/input.jpg', Readable.from([Buffer.from('one')]), { limit: 100 });
      rmSync(join(root, PARTIAL_DIR), { recursive: true, force: true });
      await st.writeStream('j_p2/input.jpg', Readable.from([Buffer.from('two')]), { limit: 100 });
      expect((await readAll((await st.openRead('j_p2/input.jpg'))!.stream)).toString()).toBe('two');
      expect(readdirSync(join(root, PARTIAL_DIR))).toEqual([]);
    });
  }

  if (kind === 's3') {
    it('presigns a short-lived GET URL the client can fetch directly', async () => {
      await st.writeStream('j_e/output.jpg', Readable.from([Buffer.from('result bytes')]), { limit: 100 });
      const url = await st.presign!('j_e/output.jpg', {
        expiresInSeconds: 60,
        contentDisposition: 'attachment; filename="x.jpg"',
        contentType: 'image/jpeg',
      });
      const r = await fetch(url);
      expect(r.status).toBe(200);
      expect(r.headers.get('content-disposition')).toContain('x.jpg');
      expect(await r.text()).toBe('result bytes');
    });

    it('an outage is StorageUnavailableError (retryable), and everything works again after it', async () => {
      await st.writeStream('j_f/input.jpg', Readable.from([Buffer.from('before')]), { limit: 100 });
      await s3.stop();
      try {
        await expect(st.stat('j_f/input.jpg')).rejects.toBeInstanceOf(StorageUnavailableError);
        await expect(st.writeStream('j_f/other.jpg', Readable.from([Buffer.from('x')]), { limit: 100 })).rejects.toBeInstanceOf(
          StorageUnavailableError,
        );
        await expect(st.check(2000)).rejects.toBeInstanceOf(StorageUnavailableError);
      } finally {
        await s3.start();
      }
      expect((await readAll((await st.openRead('j_f/input.jpg'))!.stream)).toString()).toBe('before');
    });

    it('start-up checks name the variable: missing bucket, rejected credentials, unreachable endpoint', async () => {
      const base = { ...s3.settings(), storageDir: '/nonexistent' };
      const noBucket = await createStorage({ ...base, storageUrl: 's3://no-such-bucket/x' });
      const badKey = await createStorage({ ...base, awsAccessKeyId: 'NOT-A-KEY' });
      const away = await createStorage({ ...base, s3Endpoint: 'http://127.0.0.1:9' });
      storages.push(noBucket, badKey, away);
      await expect(noBucket.check(3000)).rejects.toMatchObject({
        name: 'StorageConfigError',
        setting: 'STORAGE_URL',
        message: expect.stringMatching(/bucket "no-such-bucket".*does not exist/),
      });
      await expect(badKey.check(3000)).rejects.toMatchObject({
        name: 'StorageConfigError',
        setting: 'AWS_ACCESS_KEY_ID',
        message: expect.stringMatching(/rejected the credentials/),
      });
      // At run time (keys revoked under a running system) the same is a retryable outage, not a crash.
      await expect(badKey.writeStream('j_x/input.jpg', Readable.from([Buffer.from('x')]), { limit: 10 })).rejects.toMatchObject({
        name: 'StorageUnavailableError',
        setting: 'AWS_ACCESS_KEY_ID',
      });
      const t0 = Date.now();
      await expect(away.check(3000)).rejects.toMatchObject({
        name: 'StorageUnavailableError',
        setting: 'S3_ENDPOINT',
        message: expect.stringMatching(/S3_ENDPOINT.*unreachable/),
      });
      expect(Date.now() - t0).toBeLessThan(10_000);
    });
  }

  if (kind === 'local') {
    it("start-up removes a dead process's partial uploads, never a live one's", async () => {
      const local = st as LocalStorage;
      mkdirSync(join(local.root, PARTIAL_DIR), { recursive: true });
      // A pid that existed and is gone now.
      const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).stdout.toString();
      const mine = ownerTag();
      const deadTag = mine.replace(`~${process.pid}~`, `~${dead}~`);
      const otherHostOld = `other-host~123~abc`;
      const otherHostNew = `other-host~124~abd`;
      for (const n of [mine, deadTag, otherHostOld, otherHostNew]) writeFileSync(join(local.root, PARTIAL_DIR, n), 'partial');
      const old = (Date.now() - 7200_000) / 1000;
      utimesSync(join(local.root, PARTIAL_DIR, otherHostOld), old, old);
      expect(await local.cleanPartials({ maxAgeMs: 3600_000 })).toBe(2);
      expect(existsSync(join(local.root, PARTIAL_DIR, mine))).toBe(true);
      expect(existsSync(join(local.root, PARTIAL_DIR, deadTag))).toBe(false);
      expect(existsSync(join(local.root, PARTIAL_DIR, otherHostOld))).toBe(false);
      expect(existsSync(join(local.root, PARTIAL_DIR, otherHostNew))).toBe(true);
      // Temp folders are never jobs.
      expect(await local.staleJobs(0, Date.now() + 1e9)).not.toContain(PARTIAL_DIR);
    });

    it('an unwritable folder is a configuration error naming STORAGE_DIR', async () => {
      const file = join(tempDir(), 'a-file');
      writeFileSync(file, 'x');
      await expect((await createStorage({ storageDir: join(file, 'sub') })).check()).rejects.toMatchObject({
        name: 'StorageConfigError',
        setting: 'STORAGE_DIR',
      });
    });
  }
});

describe('STORAGE_URL', () => {
  it('selects the backend and refuses what it cannot use, naming the variable', async () => {
    expect((await createStorage({ storageDir: '/tmp/x' })).kind).toBe('local');
    expect((await createStorage({ storageUrl: '/tmp/y', storageDir: '/tmp/x' })).location).toBe('/tmp/y');
    const s = await createStorage({
      storageUrl: 's3://my-bucket/a/b/',
      storageDir: '/tmp/x',
      s3Endpoint: 'http://127.0.0.1:1',
      awsAccessKeyId: 'k',
      awsSecretAccessKey: 's',
    });
    expect(s.kind).toBe('s3');
    expect(s.location).toBe('s3://my-bucket/a/b/');
    s.close();
    await expect(createStorage({ storageUrl: 's3://UPPER/x', storageDir: '/tmp/x' })).rejects.toThrow(StorageConfigError);
    await expect(createStorage({ storageUrl: 's3://UPPER/x', storageDir: '/tmp/x' })).rejects.toThrow(/STORAGE_URL/);
    await expect(createStorage({ storageUrl: 'ftp://host/x', storageDir: '/tmp/x' })).rejects.toThrow(/STORAGE_URL/);
    await expect(createStorage({ storageUrl: 's3://good-bucket', storageDir: '/tmp/x', awsAccessKeyId: 'k' })).rejects.toThrow(
      /AWS_SECRET_ACCESS_KEY/,
    );
    await expect(createStorage({ storageUrl: 's3://good-bucket', storageDir: '/tmp/x', s3Endpoint: 'localhost:9000' })).rejects.toThrow(
      /S3_ENDPOINT/,
    );
  });
});
