import type { Logger } from 'pino';
import { keys } from '@photoenhance/queue';
import type { RedisConnection as Redis } from '@photoenhance/queue';
import type { Storage } from '@photoenhance/storage';
import type { JobService } from './job-service.js';

/**
 * Expires finished jobs and their files after the TTL. Any gateway may run it; a Redis lock keeps it to one at a time.
 * Two passes: jobs BullMQ still holds (clean → tombstone → delete files), and job folders nobody knows any more.
 */
export class Sweeper {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(
    private readonly deps: {
      engineNames: () => Promise<string[]>;
      redis: Redis;
      storage: Storage;
      jobs: JobService;
      logger: Logger;
      ttlSeconds: number;
      intervalMs: number;
    },
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.sweepOnce(), this.deps.intervalMs);
    this.timer.unref();
  }

  async sweepOnce(now = Date.now()): Promise<{ expired: number }> {
    if (this.running) {
      await this.running;
      return { expired: 0 };
    }
    let expired = 0;
    const work = (async () => {
      const { redis, storage, jobs, ttlSeconds, logger, intervalMs } = this.deps;
      const got = await redis.set(keys.sweepLock, String(process.pid), 'PX', Math.max(intervalMs, 5000), 'NX').catch(() => null);
      if (got !== 'OK') return;
      try {
        const ttlMs = ttlSeconds * 1000;
        for (const q of (await this.deps.engineNames()).map((n) => jobs.queue(n))) {
          for (const state of ['completed', 'failed'] as const) {
            const ids = await q.clean(ttlMs, 1000, state);
            for (const id of ids) {
              await jobs.records.markExpired(id);
              await storage.removeJob(id);
              expired++;
            }
          }
        }
        for (const id of await storage.staleJobs(ttlMs, now)) {
          const rec = await jobs.records.get(id);
          if (rec && !rec.expiredAt && !rec.canceledAt) {
            const job = await jobs.queue(rec.engine).getJob(id);
            const state = job ? await job.getState() : 'gone';
            if (state !== 'completed' && state !== 'failed' && state !== 'gone' && state !== 'unknown') continue; // still queued or running
            await jobs.records.markExpired(id);
          }
          await storage.removeJob(id);
          expired++;
        }
        if (expired) logger.info({ expired }, 'swept expired jobs');
      } finally {
        await redis.del(keys.sweepLock).catch(() => undefined);
      }
    })();
    this.running = work
      .catch((err: unknown) => this.deps.logger.warn({ err }, 'sweep failed'))
      .finally(() => {
        this.running = undefined;
      });
    await this.running;
    return { expired };
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }
}
