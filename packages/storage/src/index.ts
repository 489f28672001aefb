import { LocalStorage } from './local.js';
import type { S3Settings } from './s3.js';
import { StorageConfigError, type Storage } from './types.js';

export * from './types.js';
export { LocalStorage, PARTIAL_DIR, byteCounter } from './local.js';
// Types only: the S3 backend (and the AWS SDK it loads, several MiB) is imported by createStorage when STORAGE_URL asks for it.
export type { S3Settings, S3Storage } from './s3.js';
export { isAbandoned, ownerTag } from './owner.js';
export { withLocalFile } from './files.js';

/** The storage settings every app reads (the same environment variables everywhere). */
export interface StorageSettings {
  /** STORAGE_URL: `s3://BUCKET/PREFIX` for object storage, else a folder (`file:///path` or a plain path). */
  storageUrl?: string | undefined;
  /** STORAGE_DIR: the folder when STORAGE_URL is unset. */
  storageDir: string;
  s3Endpoint?: string | undefined;
  s3ForcePathStyle?: boolean | undefined;
  awsRegion?: string | undefined;
  awsAccessKeyId?: string | undefined;
  awsSecretAccessKey?: string | undefined;
}

/** The environment variable of each storage setting, the same for every app (each app spreads it into its own env map). */
export const STORAGE_ENV = {
  storageDir: 'STORAGE_DIR',
  storageUrl: 'STORAGE_URL',
  s3Endpoint: 'S3_ENDPOINT',
  s3ForcePathStyle: 'S3_FORCE_PATH_STYLE',
  awsRegion: 'AWS_REGION',
  awsAccessKeyId: 'AWS_ACCESS_KEY_ID',
  awsSecretAccessKey: 'AWS_SECRET_ACCESS_KEY',
  storageCheckTimeoutMs: 'STORAGE_CHECK_TIMEOUT_MS',
} as const;

export type StorageTarget = { kind: 'local'; dir: string } | { kind: 's3'; bucket: string; prefix: string };

const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/** Parse STORAGE_URL; throws StorageConfigError naming the variable. */
export function parseStorageUrl(url: string | undefined, storageDir: string): StorageTarget {
  if (!url) return { kind: 'local', dir: storageDir };
  if (url.startsWith('file://')) return { kind: 'local', dir: decodeURIComponent(new URL(url).pathname) };
  const m = /^s3:\/\/([^/]*)(?:\/(.*))?$/.exec(url);
  if (!m) {
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(url))
      throw new StorageConfigError('STORAGE_URL', `STORAGE_URL ${JSON.stringify(url)} is neither s3://BUCKET/PREFIX nor a folder`);
    return { kind: 'local', dir: url };
  }
  const bucket = m[1]!;
  if (!BUCKET.test(bucket) || bucket.includes('..')) {
    throw new StorageConfigError(
      'STORAGE_URL',
      `STORAGE_URL ${JSON.stringify(url)}: bucket name ${JSON.stringify(bucket)} must be 3-63 lower-case letters, digits, dots or hyphens (s3://BUCKET/PREFIX)`,
    );
  }
  const raw = (m[2] ?? '').replace(/^\/+|\/+$/g, '');
  if (raw.split('/').some((s) => s === '..' || s === '.' || s === '') && raw !== '') {
    throw new StorageConfigError('STORAGE_URL', `STORAGE_URL ${JSON.stringify(url)}: the prefix must be plain path segments`);
  }
  return { kind: 's3', bucket, prefix: raw ? `${raw}/` : '' };
}

/** Check the settings without connecting (config loading): a list of problems, each naming its variable. */
export function storageSettingProblems(s: StorageSettings): string[] {
  let target: StorageTarget;
  try {
    target = parseStorageUrl(s.storageUrl, s.storageDir);
  } catch (err) {
    return [(err as Error).message];
  }
  if (target.kind !== 's3') return [];
  const problems: string[] = [];
  if (Boolean(s.awsAccessKeyId) !== Boolean(s.awsSecretAccessKey)) {
    problems.push(
      `${s.awsAccessKeyId ? 'AWS_SECRET_ACCESS_KEY' : 'AWS_ACCESS_KEY_ID'} is required with ${s.awsAccessKeyId ? 'AWS_ACCESS_KEY_ID' : 'AWS_SECRET_ACCESS_KEY'} (object storage credentials)`,
    );
  }
  if (s.s3Endpoint) {
    try {
      const u = new URL(s.s3Endpoint);
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('not http(s)');
    } catch {
      problems.push(`S3_ENDPOINT ${JSON.stringify(s.s3Endpoint)} must be an http(s) URL such as http://127.0.0.1:9000`);
    }
  }
  return problems;
}

/**
 * LocalStorage or S3Storage, by STORAGE_URL. Connects lazily: call check() to find out whether it works. Async because
 * the S3 backend is loaded only when selected (a folder-backed process never loads the AWS SDK). Bad settings reject
 * with StorageConfigError naming the variable.
 */
export async function createStorage(
  s: StorageSettings,
  tuning: Partial<Pick<S3Settings, 'partSize' | 'connectTimeoutMs' | 'requestTimeoutMs'>> = {},
): Promise<Storage> {
  const problems = storageSettingProblems(s);
  if (problems.length) throw new StorageConfigError(problems[0]!.split(' ')[0]!, problems.join('; '));
  const target = parseStorageUrl(s.storageUrl, s.storageDir);
  if (target.kind === 'local') return new LocalStorage(target.dir);
  const { S3Storage } = await import('./s3.js');
  return new S3Storage({
    bucket: target.bucket,
    prefix: target.prefix,
    ...(s.s3Endpoint ? { endpoint: s.s3Endpoint } : {}),
    region: s.awsRegion || 'us-east-1',
    forcePathStyle: s.s3ForcePathStyle ?? false,
    ...(s.awsAccessKeyId ? { accessKeyId: s.awsAccessKeyId } : {}),
    ...(s.awsSecretAccessKey ? { secretAccessKey: s.awsSecretAccessKey } : {}),
    ...tuning,
  });
}
