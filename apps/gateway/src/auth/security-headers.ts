import type { FastifyInstance } from 'fastify';
import helmet from '@fastify/helmet';

/**
 * Security headers on every answer (@fastify/helmet): CSP, nosniff, frame-ancestors 'self', no referrer, and so on,
 * with a policy the dashboard, bull-board and /docs (swagger-ui, which sets its own CSP on its pages) work under over
 * plain HTTP:
 * - no `upgrade-insecure-requests`: over http on a LAN address it would send every script and image to https and
 *   break the page;
 * - HSTS only when PUBLIC_URL is https (a plain-http gateway must not tell browsers to insist on https);
 * - styles may be inline (the charts and bull-board set style attributes), fonts may be data: URLs; styles, fonts and
 *   scripts come from the gateway itself, never from elsewhere (nothing is fetched from outside: docs/dashboard.md).
 */
export async function registerSecurityHeaders(app: FastifyInstance): Promise<void> {
  const https = (app.config.publicUrl ?? '').startsWith('https:');
  await app.register(helmet, {
    global: true,
    contentSecurityPolicy: {
      useDefaults: true,
      directives: {
        'upgrade-insecure-requests': null,
        'script-src': ["'self'"],
        'style-src': ["'self'", "'unsafe-inline'"],
        'font-src': ["'self'", 'data:'],
        'img-src': ["'self'", 'data:', 'blob:'],
        'connect-src': ["'self'"],
      },
    },
    hsts: https ? { maxAge: 180 * 24 * 3600, includeSubDomains: false } : false,
    // The gateway serves no cross-origin embeddable resources; COEP would only get in the way.
    crossOriginEmbedderPolicy: false,
  });
}
