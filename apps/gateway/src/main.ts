import { ConfigError, createLogger } from '@photoenhance/config';
import { RedisPolicyError } from '@photoenhance/queue';
import { build, type Gateway } from './app.js';
import { type GatewayConfig, loadGatewayConfig } from './config.js';

async function main(): Promise<void> {
  let config: Readonly<GatewayConfig>;
  try {
    config = loadGatewayConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(78);
    }
    throw err;
  }
  const logger = createLogger({ name: 'gateway', level: config.logLevel, format: config.logFormat });
  let gateway: Gateway;
  try {
    gateway = await build({ config, logger });
  } catch (err) {
    logger.fatal({ err }, err instanceof RedisPolicyError ? 'refusing to start: Redis policy' : 'cannot start');
    process.exit(err instanceof RedisPolicyError ? 78 : 1);
  }
  const { app } = gateway;
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'gateway stopping');
    const force = setTimeout(() => process.exit(1), 10_000);
    force.unref();
    app.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  // Before listening: a stop that comes right after the "listening" line (a supervisor, a test) must not meet Node's
  // default handler, which ends the process by the signal instead of closing it.
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  // Fastify logs the one "listening" line; its text says what ours used to (it was logged twice).
  await app.listen({
    host: config.host,
    port: config.port,
    listenTextResolver: (address) => `gateway listening on ${address} (storage ${config.storageDir})`,
  });
}

void main();
