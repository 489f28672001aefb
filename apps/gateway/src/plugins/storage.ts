import fp from 'fastify-plugin';
import { createStorage, type Storage } from '@photoenhance/storage';

declare module 'fastify' {
  interface FastifyInstance {
    /** Uploads and results (a directory or an S3-compatible bucket). */
    storage: Storage;
  }
}

export interface StoragePluginOptions {
  /** Pass one to share it (the caller closes it); by default built from STORAGE_URL / STORAGE_DIR, checked, and its leftovers cleaned. */
  storage?: Storage;
}

export const storagePlugin = fp<StoragePluginOptions>(
  async (app, opts) => {
    const { config } = app;
    if (opts.storage) {
      app.decorate('storage', opts.storage);
      return;
    }
    const logger = app.log.child({ component: 'storage' });
    const storage = await createStorage(config);
    try {
      // A wrong bucket, key or endpoint is a start-up error naming the variable, not a failure on the first upload.
      await storage.check(config.storageCheckTimeoutMs);
    } catch (err) {
      storage.close();
      throw err;
    }
    // Uploads a killed gateway left half-written; a live gateway's (here or on another host) are left alone.
    const removed = await storage.cleanPartials({ maxAgeMs: config.partialUploadMaxAgeSeconds * 1000 }).catch((err: unknown) => {
      logger.warn({ err }, 'could not clean unfinished uploads');
      return 0;
    });
    if (removed) logger.info({ removed, storage: storage.location }, 'removed unfinished uploads left by a stopped gateway');
    logger.info({ storage: storage.location, backend: storage.kind }, 'storage ready');
    app.decorate('storage', storage);
    app.addHook('onClose', async () => storage.close());
  },
  { name: 'gateway-storage', fastify: '5.x', dependencies: ['gateway-config'] },
);
