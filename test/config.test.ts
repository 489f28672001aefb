import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, parseBytes, parseDuration } from '@photoenhance/config';
import { DEFAULT_MEMORY_LIMIT_BYTES, defaultProfile } from '@photoenhance/governor';
import { loadGatewayConfig } from '../apps/gateway/src/config.js';
import { loadWorkerConfig } from '../apps/worker/src/config.js';
import { resolveProfiles } from '../apps/worker/src/resolve-profiles.js';

function problems(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error('expected a ConfigError');
}

describe('gateway config', () => {
  it('applies defaults and freezes', () => {
    const c = loadGatewayConfig({ env: { REDIS_URL: '/tmp/r.sock' } });
    expect(c).toMatchObject({
      host: '127.0.0.1',
      port: 8080,
      maxUploadBytes: 50 * 1024 * 1024,
      maxPixels: 40_000_000,
      jobAttempts: 3,
      jobTtlSeconds: 86_400,
    });
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('names the environment variable, what is allowed and what arrived', () => {
    const p = problems(() => loadGatewayConfig({ env: { REDIS_URL: 'x', PORT: 'eighty', JOB_ATTEMPTS: '0' } }));
    expect(p.join('\n')).toContain('PORT (environment) must be an integer >= 0 and <= 65535');
    expect(p.join('\n')).toContain('"eighty"');
    expect(p.join('\n')).toContain('JOB_ATTEMPTS');
  });

  it('reports a missing required setting by its variable name', () => {
    expect(problems(() => loadGatewayConfig({ env: {} })).join('\n')).toContain('REDIS_URL (environment) is required');
  });

  it('edge limits: defaults let a 50 MiB upload through a slow link, and headers may not outlast the whole request', () => {
    const c = loadGatewayConfig({ env: { REDIS_URL: '/tmp/r.sock' } });
    expect(c).toMatchObject({ httpHeadersTimeoutMs: 30_000, httpKeepAliveTimeoutMs: 5000, minImageSide: 4, maxAspectRatio: 32 });
    // 50 MiB within the request timeout needs no more than ~0.5 Mbit/s.
    expect((c.maxUploadBytes * 8) / (c.httpRequestTimeoutMs / 1000) / 1e6).toBeLessThan(0.5);
    const p = problems(() =>
      loadGatewayConfig({ env: { REDIS_URL: 'x', HTTP_HEADERS_TIMEOUT_MS: '60000', HTTP_REQUEST_TIMEOUT_MS: '30000' } }),
    );
    expect(p.join('\n')).toContain('HTTP_HEADERS_TIMEOUT_MS (60000) must not exceed HTTP_REQUEST_TIMEOUT_MS (30000)');
  });

  it('reads a JSON file, refuses unknown keys in it, and lets the environment win', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'pe-cfg-')), 'gw.json');
    writeFileSync(file, JSON.stringify({ port: 9000, redisUrl: '/x.sock', maxUploadBytes: 4096 }));
    expect(loadGatewayConfig({ env: { GATEWAY_CONFIG: file, PORT: '9001' } })).toMatchObject({ port: 9001, maxUploadBytes: 4096 });
    writeFileSync(file, JSON.stringify({ redisUrl: '/x.sock', colour: 'red' }));
    expect(problems(() => loadGatewayConfig({ env: { GATEWAY_CONFIG: file } })).join('\n')).toContain('unknown setting "colour"');
  });
});

describe('worker config and engine profiles', () => {
  it('parses sizes and lists, and resolves built-in profiles', () => {
    const c = loadWorkerConfig({ env: { REDIS_URL: '/r.sock', WORKER_ENGINES: 'classic', ADMISSION_MIN_AVAILABLE: '4GiB' } });
    expect(c.admissionMinAvailable).toBe(4 * 1024 ** 3);
    const [classic] = resolveProfiles(c);
    expect(classic).toMatchObject({ name: 'classic', kind: 'resident', poolSize: 1 });
    expect(classic!.command[0]).toBe(process.execPath);
  });

  it('built-in engines and bare profiles share the one memory-limit default, 8 GiB (it was 2 GiB for built-ins)', () => {
    expect(DEFAULT_MEMORY_LIMIT_BYTES).toBe(8 * 1024 ** 3);
    const profiles = resolveProfiles(loadWorkerConfig({ env: { REDIS_URL: '/r.sock', WORKER_ENGINES: 'classic,esrgan,portrait' } }));
    expect(profiles.map((p) => p.memoryLimitBytes)).toEqual([
      DEFAULT_MEMORY_LIMIT_BYTES,
      DEFAULT_MEMORY_LIMIT_BYTES,
      DEFAULT_MEMORY_LIMIT_BYTES,
    ]);
    expect(defaultProfile({ name: 'x', command: ['x'] }).memoryLimitBytes).toBe(DEFAULT_MEMORY_LIMIT_BYTES);
  });

  it('says which engine is unknown and how to add it', () => {
    const c = loadWorkerConfig({ env: { REDIS_URL: '/r.sock', WORKER_ENGINES: 'classic,gfpgan' } });
    const p = problems(() => resolveProfiles(c)).join('\n');
    expect(p).toContain('WORKER_ENGINES names "gfpgan"');
    expect(p).toContain('WORKER_CONFIG');
  });

  it('overrides built-ins field by field from the file and validates profile fields', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pe-wcfg-'));
    const file = join(dir, 'w.json');
    writeFileSync(file, JSON.stringify({ engines: [{ name: 'classic', poolSize: 2, memoryLimitBytes: '1GiB' }] }));
    const [classic] = resolveProfiles(loadWorkerConfig({ env: { REDIS_URL: '/r.sock', WORKER_CONFIG: file } }));
    expect(classic).toMatchObject({ name: 'classic', poolSize: 2, memoryLimitBytes: 1024 ** 3 });
    writeFileSync(file, JSON.stringify({ engines: [{ name: 'x', command: 'python engine.py' }] }));
    expect(problems(() => loadWorkerConfig({ env: { REDIS_URL: '/r.sock', WORKER_CONFIG: file } })).join('\n')).toContain('"engines" in');
  });
});

describe('sizes and durations (one Bytes/Duration type, parsed once at load)', () => {
  it('accepts sizes with units or plain bytes, and durations with units or plain milliseconds', () => {
    const c = loadWorkerConfig({
      env: {
        REDIS_URL: '/r.sock',
        ADMISSION_MIN_AVAILABLE: '4294967296',
        GPU_MARGIN: '512MiB',
        HEARTBEAT_MS: '2s',
        ADMISSION_CHECK_MS: '250ms',
        SHUTDOWN_GRACE_MS: '1500',
      },
    });
    expect(c).toMatchObject({
      admissionMinAvailable: 2 ** 32,
      gpuMarginBytes: 512 * 1024 ** 2,
      heartbeatMs: 2000,
      admissionCheckMs: 250,
      shutdownGraceMs: 1500,
    });
    const g = loadGatewayConfig({ env: { REDIS_URL: '/r.sock', MAX_UPLOAD_BYTES: '64MiB', HTTP_REQUEST_TIMEOUT_MS: '10m' } });
    expect(g).toMatchObject({ maxUploadBytes: 64 * 1024 ** 2, httpRequestTimeoutMs: 600_000 });
  });

  it('a size in the worker config file is a number of bytes after load', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'pe-wcfg-')), 'w.json');
    writeFileSync(
      file,
      JSON.stringify({
        admissionMinAvailable: '4GiB',
        heartbeatMs: '3s',
        engines: [{ name: 'classic', memoryLimitBytes: '1GiB', idleTtlMs: '1m' }],
      }),
    );
    const c = loadWorkerConfig({ env: { REDIS_URL: '/r.sock', WORKER_CONFIG: file } });
    expect(c).toMatchObject({ admissionMinAvailable: 4 * 1024 ** 3, heartbeatMs: 3000 });
    expect(c.engines[0]).toMatchObject({ memoryLimitBytes: 1024 ** 3, idleTtlMs: 60_000 });
  });

  it('an invalid size or duration names the setting and the value', () => {
    const p = problems(() =>
      loadWorkerConfig({ env: { REDIS_URL: '/r.sock', ADMISSION_MIN_AVAILABLE: '4 gigs', HEARTBEAT_MS: '5ms' } }),
    ).join('\n');
    expect(p).toContain(
      'ADMISSION_MIN_AVAILABLE (environment) must be a size such as 512MiB, 4GiB or a number of bytes; received "4 gigs"',
    );
    expect(p).toContain('HEARTBEAT_MS (environment) must be at least 100 ms');
    expect(p).toContain('"5ms"');
    const file = join(mkdtempSync(join(tmpdir(), 'pe-wcfg-')), 'w.json');
    writeFileSync(file, JSON.stringify({ gpuMarginBytes: 'half a gig' }));
    expect(problems(() => loadWorkerConfig({ env: { REDIS_URL: '/r.sock', WORKER_CONFIG: file } })).join('\n')).toMatch(
      /"gpuMarginBytes" in .* must be a size such as 512MiB.*received "half a gig"/,
    );
    expect(problems(() => loadGatewayConfig({ env: { REDIS_URL: '/r.sock', MAX_UPLOAD_BYTES: 'big' } })).join('\n')).toContain(
      'MAX_UPLOAD_BYTES (environment) must be a size such as',
    );
  });

  it('the admission settings have the bounds of the operator control message schema', () => {
    const p = problems(() =>
      loadWorkerConfig({ env: { REDIS_URL: '/r.sock', ADMISSION_MAX_USED_RATIO: '5', ADMISSION_MAX_PRESSURE: '101' } }),
    ).join('\n');
    expect(p).toContain('ADMISSION_MAX_USED_RATIO (environment) must be a number <= 1');
    expect(p).toContain('ADMISSION_MAX_PRESSURE (environment) must be a number >= 0 and <= 100');
  });

  it('the worker process exits 78 naming the setting and the value (it used to crash with "received null")', async () => {
    const { code, stderr } = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = execFile(
        process.execPath,
        ['--import', 'tsx', 'apps/worker/src/main.ts'],
        { env: { ...process.env, REDIS_URL: '/nonexistent/r.sock', ADMISSION_MIN_AVAILABLE: '4 gigs' }, timeout: 30_000 },
        (_err, _out, stderr) => resolve({ code: child.exitCode, stderr }),
      );
    });
    expect(code).toBe(78);
    expect(stderr).toContain('ADMISSION_MIN_AVAILABLE');
    expect(stderr).toContain('"4 gigs"');
    expect(stderr).not.toContain('null');
  });

  it.each([
    ['30s', 30_000],
    ['250ms', 250],
    ['5m', 300_000],
    ['1h', 3_600_000],
    ['1500', 1500],
    [42, 42],
  ] as const)('parseDuration %s', (input, ms) => {
    expect(parseDuration(input)).toBe(ms);
  });
});

describe('parseBytes', () => {
  it.each([
    ['512MiB', 512 * 1024 ** 2],
    ['8GiB', 8 * 1024 ** 3],
    ['2G', 2 * 1024 ** 3],
    ['1048576', 1048576],
    [4096, 4096],
  ] as const)('%s', (input, bytes) => {
    expect(parseBytes(input)).toBe(bytes);
  });
  it('refuses nonsense with an example of what works', () => {
    expect(() => parseBytes('lots')).toThrow(/512MiB/);
  });
});
