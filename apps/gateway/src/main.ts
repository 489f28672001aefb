import { pino } from 'pino';
import { ConfigError } from '@photoenhance/config';
import { RedisPolicyError } from '@photoenhance/queue';
import { build } from './app.js';
import { loadGatewayConfig } from './config.js';

async function main(): Promise<void> {
  let config;
  try {
    config = loadGatewayConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(78);
    }
    throw err;
  }
  const logger = pino({ name: 'gateway', level: config.logLevel });
  let gateway;
  try {
    gateway = await build({ config, logger });
  } catch (err) {
    logger.fatal({ err: (err as Error).message }, err instanceof RedisPolicyError ? 'refusing to start: Redis policy' : 'cannot start');
    process.exit(err instanceof RedisPolicyError ? 78 : 1);
  }
  const { app } = gateway;
  const address = await app.listen({ host: config.host, port: config.port });
  logger.info({ address, storage: config.storageDir }, `gateway listening on ${address}`);
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'gateway stopping');
    const force = setTimeout(() => process.exit(1), 10_000);
    force.unref();
    app.close().then(() => process.exit(0), () => process.exit(1));
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

void main();
