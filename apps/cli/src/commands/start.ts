import { CliError, EXIT } from '../exit.js';
import { varDir } from '../paths.js';
import { Launcher, resolveStorageDir } from '../launcher/launcher.js';

/** `photoenhance start` (declared in specs/start.ts). */
export async function start(flags: { config?: string }): Promise<number> {
  const env = { ...process.env };
  if (flags.config) env.WORKER_CONFIG = flags.config;
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
