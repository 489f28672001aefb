import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Credentials s3rver accepts (it checks signatures against these). */
export const S3RVER_KEY = 'S3RVER';
export const S3RVER_SECRET = 'S3RVER';

const SCRIPT = fileURLToPath(new URL('./s3rver-process.mjs', import.meta.url));

/**
 * A private S3-compatible server (s3rver 3.7.1) for one test file, in its own process on a loopback port, with its
 * data in a temp folder. stop() and start() again keep the port and the data (to test outages).
 */
export interface TestS3 {
  endpoint: string;
  address: string;
  port: number;
  bucket: string;
  dir: string;
  /** STORAGE_URL and the S3/AWS variables for a gateway or worker using this server (`prefix` inside the bucket). */
  env(prefix?: string): Record<string, string>;
  /** The same as gateway/worker config overrides. */
  settings(prefix?: string): {
    storageUrl: string;
    s3Endpoint: string;
    s3ForcePathStyle: boolean;
    awsRegion: string;
    awsAccessKeyId: string;
    awsSecretAccessKey: string;
  };
  pid(): number | undefined;
  stop(): Promise<void>;
  start(): Promise<void>;
  close(): Promise<void>;
}

/**
 * The command line that runs s3rver (argument array): another harness can wrap it, e.g. in `ip netns exec NS`.
 * It prints one JSON line `{"ready":true,"address","port"}` when it listens.
 */
export function s3rverCommand(o: { dir: string; address?: string; port?: number; buckets?: string[] }): {
  command: string;
  args: string[];
} {
  const args = [SCRIPT, '--dir', o.dir, '--address', o.address ?? '127.0.0.1', '--port', String(o.port ?? 0)];
  for (const b of o.buckets ?? []) args.push('--bucket', b);
  return { command: process.execPath, args };
}

/** Start the process and wait for its ready line (bounded). */
export function spawnS3rver(
  cmd: { command: string; args: string[] },
  timeoutMs = 15_000,
): Promise<{ proc: ChildProcess; address: string; port: number }> {
  const proc = spawn(cmd.command, cmd.args, { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const t = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`s3rver did not start within ${timeoutMs} ms: ${err.slice(-2000)}`));
    }, timeoutMs);
    proc.stderr!.on('data', (c: Buffer) => (err += c.toString()));
    proc.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (!line) return;
      clearTimeout(t);
      const info = JSON.parse(line) as { address: string; port: number };
      resolve({ proc, address: info.address, port: info.port });
    });
    proc.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`s3rver exited (${code}) before it was ready: ${err.slice(-2000)}`));
    });
    proc.once('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
  });
}

export async function startTestS3(opts: { bucket?: string; address?: string } = {}): Promise<TestS3> {
  const dir = mkdtempSync(join(tmpdir(), 'pe-s3-'));
  const bucket = opts.bucket ?? 'photoenhance-test';
  const address = opts.address ?? '127.0.0.1';
  let child: ChildProcess | undefined;
  let port = 0;
  const start = async (): Promise<void> => {
    if (child) return;
    const r = await spawnS3rver(s3rverCommand({ dir, address, port, buckets: [bucket] }));
    child = r.proc;
    port = r.port;
  };
  const stop = async (): Promise<void> => {
    const proc = child;
    child = undefined;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    // SIGKILL: an outage starts at once. On SIGTERM s3rver waits for the clients' keep-alive connections, up to seconds
    // on a busy machine, so a job the test meant to catch mid-run could finish before storage went away.
    proc.kill('SIGKILL');
    await exited;
  };
  await start();
  const endpoint = (): string => `http://${address}:${port}`;
  const settings = (prefix = ''): ReturnType<TestS3['settings']> => ({
    storageUrl: `s3://${bucket}/${prefix}`,
    s3Endpoint: endpoint(),
    s3ForcePathStyle: true,
    awsRegion: 'us-east-1',
    awsAccessKeyId: S3RVER_KEY,
    awsSecretAccessKey: S3RVER_SECRET,
  });
  return {
    get endpoint() {
      return endpoint();
    },
    address,
    get port() {
      return port;
    },
    bucket,
    dir,
    settings,
    env(prefix = '') {
      const s = settings(prefix);
      return {
        STORAGE_URL: s.storageUrl,
        S3_ENDPOINT: s.s3Endpoint,
        S3_FORCE_PATH_STYLE: 'true',
        AWS_REGION: s.awsRegion,
        AWS_ACCESS_KEY_ID: s.awsAccessKeyId,
        AWS_SECRET_ACCESS_KEY: s.awsSecretAccessKey,
      };
    },
    pid: () => child?.pid,
    stop,
    start,
    async close() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
