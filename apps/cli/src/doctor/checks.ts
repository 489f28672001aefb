import { spawn, spawnSync } from 'node:child_process';
import { accessSync, constants, readFileSync, statSync } from 'node:fs';
import { basename, delimiter, isAbsolute, join, resolve } from 'node:path';
import { Redis } from 'ioredis';
import {
  RedisConfigError,
  assertNoEviction,
  createRedis,
  describeRedisTarget,
  parseRedisTarget,
  redisOptions,
  waitForRedis,
  type RedisConnection,
} from '@photoenhance/queue';

/** One line of the doctor's table. `required: false` checks are shown but never fail the run. */
export interface CheckResult {
  name: string;
  ok: boolean;
  required: boolean;
  detail: string;
  fix?: string;
  /** Extra lines (an engine's own --check findings). */
  notes?: string[];
}

export const REDIS_INSTALL_HINT =
  'install Redis: sudo apt-get install -y redis-server (Debian/Ubuntu) or brew install redis (macOS); or point at one with REDIS_URL=redis://host:6379';

export function checkNode(version = process.versions.node): CheckResult {
  const [major = 0, minor = 0] = version.split('.').map(Number);
  const ok = major > 20 || (major === 20 && minor >= 9);
  return {
    name: 'node',
    ok,
    required: true,
    detail: `v${version} (needs >= 20.9)`,
    ...(ok ? {} : { fix: 'install Node.js 20.9 or newer (https://nodejs.org, or nvm install 20)' }),
  };
}

export async function checkRedis(env: NodeJS.ProcessEnv): Promise<CheckResult[]> {
  if (env.REDIS_SENTINELS || env.REDIS_CLUSTER_NODES) return [await checkRoutedRedis(env)];
  if (env.REDIS_URL) return [await checkRedisUrl(env.REDIS_URL)];
  const found = findExecutable('redis-server', process.cwd(), env.PATH);
  if (!found)
    return [
      { name: 'redis-server', ok: false, required: true, detail: 'not found on PATH (and REDIS_URL is not set)', fix: REDIS_INSTALL_HINT },
    ];
  const v = spawnSync(found, ['--version'], { encoding: 'utf8', timeout: 5000 });
  const version = /v=([\d.]+)/.exec(v.stdout ?? '')?.[1];
  return [
    {
      name: 'redis-server',
      ok: v.status === 0,
      required: true,
      detail: `${found}${version ? ` (${version})` : ''}`,
      ...(v.status === 0 ? {} : { fix: `${found} --version failed: ${(v.stderr || v.error?.message || '').trim()}` }),
    },
  ];
}

/** Redis behind Sentinel or a Cluster: connect as the apps do, check noeviction on every master. */
async function checkRoutedRedis(env: NodeJS.ProcessEnv): Promise<CheckResult> {
  const name = env.REDIS_SENTINELS ? 'redis (REDIS_SENTINELS)' : 'redis (REDIS_CLUSTER_NODES)';
  const list = (v: string | undefined): string[] | undefined =>
    v
      ?.split(',')
      .map((x) => x.trim())
      .filter(Boolean);
  let client: RedisConnection | undefined;
  try {
    const target = parseRedisTarget({
      redisUrl: env.REDIS_URL,
      redisPassword: env.REDIS_PASSWORD,
      redisSentinels: list(env.REDIS_SENTINELS),
      redisSentinelMaster: env.REDIS_SENTINEL_MASTER,
      redisSentinelPassword: env.REDIS_SENTINEL_PASSWORD,
      redisClusterNodes: list(env.REDIS_CLUSTER_NODES),
    });
    client = createRedis(target, 'fail-fast', 'doctor');
    client.on('error', () => undefined);
    await waitForRedis(client, 5000, target);
    await assertNoEviction(client);
    return { name, ok: true, required: true, detail: `${describeRedisTarget(target)} answers; noeviction` };
  } catch (err) {
    const detail = err instanceof RedisConfigError ? err.problems.join('; ') : (err as Error).message;
    return {
      name,
      ok: false,
      required: true,
      detail,
      fix: 'see docs/redis.md: reachable sentinels (or cluster nodes), the right master name and passwords, maxmemory-policy noeviction',
    };
  } finally {
    client?.disconnect();
  }
}

async function checkRedisUrl(url: string): Promise<CheckResult> {
  const name = 'redis (REDIS_URL)';
  let client: Redis | undefined;
  try {
    client = new Redis({
      ...redisOptions(url),
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
      connectTimeout: 3000,
    });
    await client.connect();
    await client.ping();
    const policy = ((await client.config('GET', 'maxmemory-policy')) as string[])[1];
    if (policy && policy !== 'noeviction') {
      return {
        name,
        ok: false,
        required: true,
        detail: `${url} answers, but maxmemory-policy is ${policy}`,
        fix: 'BullMQ needs noeviction: redis-cli CONFIG SET maxmemory-policy noeviction (and set it in redis.conf)',
      };
    }
    return { name, ok: true, required: true, detail: `${url} answers PING` };
  } catch (err) {
    return {
      name,
      ok: false,
      required: true,
      detail: `${url}: ${(err as Error).message}`,
      fix: `start Redis there, correct REDIS_URL, or unset it to let \`npm start\` run a private redis-server`,
    };
  } finally {
    client?.disconnect();
  }
}

export async function checkSharp(): Promise<CheckResult> {
  try {
    const mod = (await import('sharp')) as unknown as { default: { versions: Record<string, string> } };
    const v = mod.default.versions;
    return { name: 'sharp', ok: true, required: true, detail: `sharp ${v.sharp ?? '?'}, libvips ${v.vips ?? '?'}` };
  } catch (err) {
    return {
      name: 'sharp',
      ok: false,
      required: true,
      detail: (err as Error).message.split('\n')[0] ?? 'cannot load',
      fix: 'reinstall it for this platform: npm install --include=optional sharp (see https://sharp.pixelplumbing.com/install)',
    };
  }
}

/** An engine profile as the worker reads it from WORKER_CONFIG (only the fields the doctor needs). */
export interface ProfileLike {
  name?: unknown;
  kind?: unknown;
  command?: unknown;
  cwd?: unknown;
  env?: unknown;
}

/** Engine profiles from `--config` / WORKER_CONFIG, or undefined when neither is set (built-in classic only). */
export function readProfiles(file: string | undefined): { file: string; profiles: ProfileLike[] } | { error: CheckResult } | undefined {
  if (!file) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    return {
      error: {
        name: 'worker config',
        ok: false,
        required: true,
        detail: `${file}: ${(err as Error).message}`,
        fix: 'fix the file (a JSON object with "engines": [...]) or unset WORKER_CONFIG',
      },
    };
  }
  const engines = (parsed as { engines?: unknown } | null)?.engines;
  if (engines === undefined) return { file, profiles: [] };
  if (!Array.isArray(engines)) {
    return {
      error: {
        name: 'worker config',
        ok: false,
        required: true,
        detail: `${file}: "engines" must be an array of profiles`,
        fix: 'write "engines": [{ "name", "kind", "command": [...] }]',
      },
    };
  }
  return { file, profiles: engines as ProfileLike[] };
}

/** Whether the profile's program exists, and for Python programs with --check, what they report. */
export async function checkProfile(p: ProfileLike, baseDir: string): Promise<CheckResult> {
  const name = `engine ${typeof p.name === 'string' ? p.name : '?'}`;
  const command = p.command;
  if (!Array.isArray(command) || command.length === 0 || !command.every((a) => typeof a === 'string')) {
    return {
      name,
      ok: false,
      required: true,
      detail: `command must be a non-empty array of strings; received ${JSON.stringify(command)}`,
      fix: 'set "command": ["executable", "arg", ...] in the worker config',
    };
  }
  const argv = command as string[];
  const cwd = typeof p.cwd === 'string' ? resolve(baseDir, p.cwd) : baseDir;
  const exe = findExecutable(argv[0]!, cwd, process.env.PATH);
  if (!exe) {
    return {
      name,
      ok: false,
      required: true,
      detail: `${argv[0]} not found${argv[0]!.includes('/') ? '' : ' on PATH'} or not executable`,
      fix: `install ${basename(argv[0]!)} or correct the first element of "command"`,
    };
  }
  const script = argv.slice(1).find((a) => /\.(py|js|mjs|ts)$/.test(a));
  if (script) {
    const scriptPath = resolve(cwd, script);
    if (!isFile(scriptPath))
      return {
        name,
        ok: false,
        required: true,
        detail: `${script} does not exist (looked at ${scriptPath})`,
        fix: 'correct the script path in "command" (relative paths start at the profile\'s cwd)',
      };
  }
  if (/^python[\d.]*$/.test(basename(exe)) && script?.endsWith('.py')) {
    const env = { ...process.env, ...(isStringRecord(p.env) ? p.env : {}) };
    return { name, ...(await runPythonCheck([exe, ...argv.slice(1)], cwd, env)) };
  }
  return { name, ok: true, required: true, detail: `${argv.join(' ')}` };
}

/** Run `<command> --check`: the program prints one JSON object and exits 0 (usable) or 1 (not). */
async function runPythonCheck(argv: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<Omit<CheckResult, 'name'>> {
  const shown = `${argv.map((a) => basename(a)).join(' ')} --check`;
  const out = await new Promise<{ code: number | null; stdout: string; stderr: string; error?: Error }>((done) => {
    const child = spawn(argv[0]!, [...argv.slice(1), '--check'], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', (error) => done({ code: null, stdout, stderr, error }));
    child.on('close', (code) => done({ code, stdout, stderr }));
  });
  const report = lastJsonObject(out.stdout);
  const notes = report ? describeReport(report) : [];
  if (!report && out.stderr.trim()) notes.push(...out.stderr.trim().split('\n').slice(-5));
  if (out.error) return { ok: false, required: true, detail: `${shown}: ${out.error.message}`, notes };
  if (out.code === 0) return { ok: true, required: true, detail: `${shown}: usable`, notes };
  const fix = report ? firstString(report, ['fix', 'hint', 'how_to_fix', 'howToFix']) : undefined;
  return {
    ok: false,
    required: true,
    detail: `${shown}: not usable (exit ${out.code ?? 'timeout'})`,
    fix: fix ?? 'see the findings below',
    notes,
  };
}

function lastJsonObject(text: string): Record<string, unknown> | undefined {
  const lines = text.trim().split('\n').reverse();
  for (const candidate of [text.trim(), ...lines]) {
    try {
      const v: unknown = JSON.parse(candidate);
      if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
    } catch {
      // not this line
    }
  }
  return undefined;
}

/** Render the adapter's findings generically: the shape belongs to the engine, so show what is there. */
function describeReport(report: Record<string, unknown>): string[] {
  const lines: string[] = [];
  for (const [key, value] of Object.entries(report)) {
    if (Array.isArray(value)) {
      if (value.length === 0) continue;
      for (const item of value) lines.push(`${key}: ${describeItem(item)}`);
    } else if (value && typeof value === 'object') {
      lines.push(
        `${key}: ${Object.entries(value)
          .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
          .join(', ')}`,
      );
    } else {
      lines.push(`${key}: ${String(value)}`);
    }
  }
  return lines.map((l) => (l.length > 300 ? `${l.slice(0, 300)}…` : l));
}

function describeItem(item: unknown): string {
  if (typeof item === 'string') return item;
  if (item && typeof item === 'object') {
    const o = item as Record<string, unknown>;
    const what = firstString(o, ['name', 'what', 'item', 'check', 'message']);
    const fix = firstString(o, ['fix', 'hint', 'how', 'install']);
    if (what) return `${what}${fix ? ` — fix: ${fix}` : ''}`;
  }
  return JSON.stringify(item);
}

function firstString(o: Record<string, unknown>, keys: string[]): string | undefined {
  for (const k of keys) if (typeof o[k] === 'string') return o[k] as string;
  return undefined;
}

function isStringRecord(v: unknown): v is Record<string, string> {
  return !!v && typeof v === 'object' && Object.values(v).every((x) => typeof x === 'string');
}

function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

/** `which`: a path with a slash is taken relative to cwd; a bare name is searched on PATH. */
export function findExecutable(cmd: string, cwd: string, pathEnv: string | undefined): string | undefined {
  const candidates = cmd.includes('/')
    ? [isAbsolute(cmd) ? cmd : resolve(cwd, cmd)]
    : (pathEnv ?? '')
        .split(delimiter)
        .filter(Boolean)
        .map((d) => join(d, cmd));
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      if (statSync(c).isFile()) return c;
    } catch {
      // next
    }
  }
  return undefined;
}
