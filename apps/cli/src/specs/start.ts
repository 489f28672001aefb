import type { Command } from 'commander';
import { examples } from './common.js';

export function registerStart(program: Command): void {
  const cmd = program
    .command('start')
    .summary('run Redis (private unless REDIS_URL), the gateway and a worker on this machine (npm start)')
    .description(
      'Run everything on this machine (what `npm start` does): a private redis-server (unless REDIS_URL is set), the gateway and a worker. ' +
        'Reads REDIS_URL, HOST (default: 127.0.0.1), PORT (default: 8080), STORAGE_DIR (default: <var>/storage), WORKER_CONFIG, ' +
        'PHOTOENHANCE_VAR_DIR (default: <repo>/var); passes every other variable through.',
    )
    .option('--config <file>', 'worker config with engine profiles (sets WORKER_CONFIG for the worker)')
    .action(async (flags: { config?: string }) => {
      const { start } = await import('../commands/start.js');
      process.exitCode = await start(flags);
    });
  examples(cmd, [
    ['photoenhance start', 'Redis, gateway and worker on http://127.0.0.1:8080'],
    ['PORT=9090 photoenhance start', 'another port (the other commands find it while it runs)'],
    ['photoenhance start --config engines/examples/imagemagick.json', 'add ImageMagick as an engine'],
  ]);
}
