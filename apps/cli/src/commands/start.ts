import type { Command } from 'commander';
import { CliError, EXIT } from '../exit.js';
import { varDir } from '../paths.js';
import { Launcher, resolveStorageDir } from '../launcher/launcher.js';

export function registerStart(program: Command): void {
  program
    .command('start')
    .summary('run Redis (private unless REDIS_URL), the gateway and a worker on this machine (npm start)')
    .description(
      'Run everything on this machine (what `npm start` does): a private redis-server (unless REDIS_URL is set), the gateway and a worker. ' +
        'Reads REDIS_URL, HOST (127.0.0.1), PORT (8080), STORAGE_DIR (<var>/storage), WORKER_CONFIG, PHOTOENHANCE_VAR_DIR (<repo>/var); passes every other variable through.',
    )
    .option('--config <file>', 'worker config with engine profiles (sets WORKER_CONFIG for the worker)')
    .action(async (flags: { config?: string }) => {
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
      process.exitCode = await launcher.run();
    });
}
