import { pino } from 'pino';
import { ConfigError } from '@photoenhance/config';
import { RedisPolicyError } from '@photoenhance/queue';
import { loadWorkerConfig } from './config.js';
import { EnhanceWorker } from './worker.js';

async function main(): Promise<void> {
  let worker: EnhanceWorker;
  try {
    worker = new EnhanceWorker({ config: loadWorkerConfig() });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(78);
    }
    throw err;
  }
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    worker.logger.info({ signal }, 'shutdown requested');
    worker.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  try {
    await worker.start();
  } catch (err) {
    const log = pino({ name: 'worker' });
    log.fatal({ err }, err instanceof RedisPolicyError ? 'refusing to start: Redis policy' : 'cannot start');
    await worker.close().catch(() => undefined);
    process.exit(err instanceof RedisPolicyError ? 78 : 1);
  }
}

void main();
