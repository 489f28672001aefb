import type { FastifyInstance, FastifyRequest } from 'fastify';
import rateLimit from '@fastify/rate-limit';
import underPressure from '@fastify/under-pressure';
import { ApiError } from '@photoenhance/contracts';
import { keys } from '@photoenhance/queue';
import { clientIdentity } from '../client-id.js';

/** Probes stay answerable whatever a client does: never rate limited. */
const EXEMPT = new Set(['/healthz', '/readyz', '/health']);
const pathOf = (req: FastifyRequest): string => req.url.split('?')[0] ?? '';

/**
 * Per-client rate limit (429 RATE_LIMITED, counted in Redis so every gateway shares the count) and self-protection
 * (503 OVERLOADED when the event loop lags or the heap passes its ceiling). Register before any route.
 */
export async function registerBackpressure(app: FastifyInstance): Promise<void> {
  const { config, redis } = app;
  if (config.rateLimitMax > 0) {
    await app.register(rateLimit, {
      global: true,
      max: config.rateLimitMax,
      timeWindow: config.rateLimitWindowMs,
      redis,
      nameSpace: keys.rateLimitNamespace,
      // Redis down: do not turn every request into a 500; the submission path answers 503 by itself.
      skipOnError: true,
      keyGenerator: (req) => {
        const who = clientIdentity(req, config.apiKeys);
        return `${who.kind}:${who.id}`;
      },
      allowList: (req) => EXEMPT.has(pathOf(req)),
      errorResponseBuilder: (_req, ctx) => {
        const seconds = Math.max(1, Math.ceil(ctx.ttl / 1000));
        return new ApiError(
          'RATE_LIMITED',
          `This client sent more than ${ctx.max} requests in ${Math.round(config.rateLimitWindowMs / 1000)} s (RATE_LIMIT_MAX per RATE_LIMIT_WINDOW_MS)`,
          {
            extensions: { limit: ctx.max, windowMs: config.rateLimitWindowMs, retryAfterSeconds: seconds },
            headers: { 'retry-after': String(seconds) },
          },
        );
      },
    });
  }

  if (config.maxEventLoopDelayMs > 0 || config.maxHeapUsedBytes > 0) {
    const retryAfter = 5;
    await app.register(underPressure, {
      ...(config.maxEventLoopDelayMs > 0 ? { maxEventLoopDelay: config.maxEventLoopDelayMs } : {}),
      ...(config.maxHeapUsedBytes > 0 ? { maxHeapUsedBytes: config.maxHeapUsedBytes } : {}),
      // A window with no histogram sample reads as Infinity (the loop was blocked the whole window). Keep the window at
      // least as long as the limit, so that reading is only ever given for a stall that really passed the limit.
      sampleInterval: Math.max(250, config.maxEventLoopDelayMs),
      retryAfter,
      pressureHandler: (req, _reply, type, value) => {
        if (EXEMPT.has(pathOf(req))) return Promise.resolve();
        const what =
          type === 'eventLoopDelay'
            ? `event-loop delay ${Math.round(Number(value))} ms (limit MAX_EVENT_LOOP_DELAY_MS ${config.maxEventLoopDelayMs})`
            : `${type} ${String(value)} (limit MAX_HEAP_USED_BYTES ${config.maxHeapUsedBytes})`;
        return Promise.reject(
          new ApiError('OVERLOADED', `The gateway is under pressure: ${what}`, {
            extensions: { pressure: type },
            headers: { 'retry-after': String(retryAfter) },
          }),
        );
      },
    });
  }
}
