import cors from '@fastify/cors';
import type { FastifyInstance, FastifyRequest } from 'fastify';

/**
 * CORS for the routes a browser page on another origin needs: jobs, batches, the PhotoEnhanceAI-compatible routes
 * (their front-ends call the API from another port) and the service description at `/`. Keys travel in headers, never
 * cookies, so `*` is the default and credentials are never allowed. Operator routes (dashboard, bull-board, admission)
 * never get CORS headers: they use a cookie and must stay same-origin.
 *
 * Registered before the host check, rate limits and API-key hooks: a preflight carries no key (browsers strip
 * Authorization from it), so it is answered here, in the onRequest hook, before anything could refuse it. It reveals
 * nothing but which methods and headers are allowed.
 */

/** Paths a cross-origin page may call (the path only; the query string is ignored). */
export function isCorsRoute(path: string): boolean {
  if (path === '/' || path === '/health') return true;
  if (path === '/v1/engines') return true;
  return ['/v1/jobs', '/v1/batches', '/api/v1/'].some(
    (p) => path === p || path.startsWith(p.endsWith('/') ? p : `${p}/`) || path.startsWith(`${p}?`),
  );
}

/** Headers a cross-origin script may read besides the CORS-safelisted ones. */
export const EXPOSED_HEADERS = [
  'Location',
  'Retry-After',
  'Content-Disposition',
  'ETag',
  'Last-Modified',
  'X-Request-Id',
  'WWW-Authenticate',
];

export async function registerCors(app: FastifyInstance): Promise<void> {
  const list = app.config.corsOrigins.map((o) => o.trim());
  if (list.length === 0 || (list.length === 1 && list[0] === 'none')) return;
  const any = list.includes('*');
  const allowed = new Set(list.map((o) => o.toLowerCase().replace(/\/$/, '')));
  const base = {
    methods: ['GET', 'HEAD', 'POST', 'DELETE'],
    exposedHeaders: EXPOSED_HEADERS,
    credentials: false,
    maxAge: 600,
    // Reflect what the page asks for (Authorization, X-API-Key, Idempotency-Key, Content-Type): the routes check them.
    allowedHeaders: null as unknown as string[],
  };
  await app.register(cors, {
    hook: 'onRequest',
    delegator: (req: FastifyRequest, cb: (err: Error | null, options: Record<string, unknown>) => void) => {
      const path = req.url.split('?')[0] ?? '';
      if (!isCorsRoute(path)) return cb(null, { origin: false });
      // A listed origin is echoed (with Vary: Origin); others get no Access-Control-Allow-Origin, so the browser refuses.
      return cb(null, {
        ...base,
        origin: any
          ? '*'
          : (origin: string | undefined, done: (e: Error | null, ok: boolean) => void) =>
              done(null, origin !== undefined && allowed.has(origin.toLowerCase())),
      });
    },
  });
  // helmet's Cross-Origin-Resource-Policy: same-origin would stop a cross-origin page showing a result it may read
  // (an <img> of the download): on CORS routes the resource policy follows CORS instead.
  app.addHook('onSend', async (req, reply) => {
    if (isCorsRoute(req.url.split('?')[0] ?? '') && reply.getHeader('access-control-allow-origin'))
      reply.header('cross-origin-resource-policy', 'cross-origin');
  });
}
