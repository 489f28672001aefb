import { readFileSync } from 'node:fs';
import { CliError, EXIT } from '../exit.js';
import { varDir } from '../paths.js';
import { Launcher, resolveStorageDir } from '../launcher/launcher.js';

/** `photoenhance start` (declared in specs/start.ts). */
export async function start(flags: { config?: string }): Promise<number> {
  const env = { ...process.env };
  if (flags.config) env.WORKER_CONFIG = flags.config;
  addBuiltins(env);
  // A person at this terminal reads the children's logs through the launcher's pipe: pretty, coloured lines for them.
  if (process.stdout.isTTY && !env.LOG_FORMAT) {
    env.LOG_FORMAT = 'pretty';
    if (!env.NO_COLOR && !env.FORCE_COLOR) env.FORCE_COLOR = '1';
  }
  const port = Number(env.PORT ?? 8080);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new CliError(EXIT.USAGE, `error: PORT must be a port number from 1 to 65535; received ${JSON.stringify(env.PORT)}`);
  }
  const dir = varDir(env);
  const launcher = new Launcher({
    env,
    varDir: dir,
    host: env.HOST || '127.0.0.1',
    port,
    storageDir: resolveStorageDir(env, dir),
    redisUrl: env.REDIS_URL || undefined,
    graceMs: 10_000,
    gatewayReadyMs: 60_000,
    workerReadyMs: 120_000,
  });
  return await launcher.run();
}

/**
 * WORKER_CONFIG adds to the built-in engine: `WORKER_CONFIG=engines/examples/imagemagick.json npm start` runs classic
 * and imagemagick (the worker alone would run only the file's engines). The config says otherwise with a "run" list;
 * WORKER_ENGINES, when set, decides as always. An unreadable file is left for the worker to report with its setting name.
 */
export function addBuiltins(env: NodeJS.ProcessEnv): void {
  if (!env.WORKER_CONFIG || env.WORKER_ENGINES) return;
  let file: { engines?: Array<{ name?: unknown }>; run?: unknown };
  try {
    file = JSON.parse(readFileSync(env.WORKER_CONFIG, 'utf8')) as typeof file;
  } catch {
    return;
  }
  if (file.run !== undefined || !Array.isArray(file.engines) || file.engines.length === 0) return;
  const names = file.engines.map((e) => e?.name).filter((n): n is string => typeof n === 'string');
  env.WORKER_ENGINES = [...new Set(['classic', ...names])].join(',');
}
