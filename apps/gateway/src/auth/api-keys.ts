import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions, onRequestHookHandler } from 'fastify';
import type { Logger } from 'pino';
import type { RedisConnection as Redis } from '@photoenhance/queue';
import { ApiError } from '@photoenhance/contracts';
import { keys } from '@photoenhance/queue';
import type { GatewayConfig } from '../config.js';
import { clientIdentity, presentedKey } from '../client-id.js';
import { sendProblem } from '../problems.js';
import { isOperatorRoute } from './operator-auth.js';

/**
 * API keys as authentication (API_KEYS / API_KEYS_FILE). Without keys nothing here is installed: every route is
 * open, as it always was. With keys:
 *
 * - every client route (`/v1/…` and the compat `/api/v1/…`, SSE included) answers 401 problem+json with
 *   `WWW-Authenticate: Bearer` unless the request carries a valid key (`Authorization: Bearer <secret>` or
 *   `X-API-Key: <secret>`). Open: the probes (`/health`, `/healthz`, `/readyz`), and `GET /v1/engines` and
 *   `GET /v1/system`, which describe the service and its hosts but no client's work. Operator routes have their own
 *   guard (operator-auth.ts).
 * - a job or batch belongs to the key that created it: another key gets the same 404 an unknown id gets (never 403,
 *   which would confirm the id exists), on every route that names one.
 *
 * Both checks are one onRequest hook per route, attached when the route is registered, so a route added later is
 * covered by the same rules; a client route with an id parameter that no ownership rule covers stops the build.
 */

/** Readable without a key: they hold no client's jobs. */
const OPEN = new Set(['/v1/engines', '/v1/system']);
const PROBES = new Set(['/health', '/healthz', '/readyz']);

type Kind = 'job' | 'batch';
/** Routes that name a job or batch, by URL pattern prefix: the resource's owner must be the caller. */
const OWNED: ReadonlyArray<{ prefix: string; param: string; kind: Kind }> = [
  { prefix: '/v1/jobs/:id', param: 'id', kind: 'job' },
  { prefix: '/v1/batches/:id', param: 'id', kind: 'batch' },
  { prefix: '/api/v1/status/:task_id', param: 'task_id', kind: 'job' },
  { prefix: '/api/v1/download/:task_id', param: 'task_id', kind: 'job' },
  { prefix: '/api/v1/tasks/:task_id', param: 'task_id', kind: 'job' },
  { prefix: '/api/v1/batch/status/:id', param: 'id', kind: 'batch' },
  { prefix: '/api/v1/batch/download/:id', param: 'id', kind: 'batch' },
];

/** Whether a route is a client route (needs a key when keys are configured). */
export function isClientRoute(method: string, url: string): boolean {
  if (PROBES.has(url) || isOperatorRoute(method, url)) return false;
  if ((method === 'GET' || method === 'HEAD') && OPEN.has(url)) return false;
  return url.startsWith('/v1/') || url.startsWith('/api/v1/');
}

export function ownershipRule(url: string): { param: string; kind: Kind } | undefined {
  return OWNED.find((o) => url === o.prefix || url.startsWith(`${o.prefix}/`));
}

/** The same messages an unknown id gets (job-service.ts, batch-service.ts), so the two cannot be told apart. */
export function notFound(kind: Kind, id: string): ApiError {
  return kind === 'job'
    ? new ApiError('JOB_NOT_FOUND', `No job with id ${id}`)
    : new ApiError('BATCH_NOT_FOUND', `No batch with id ${id} (unknown, or expired with its jobs)`);
}

const CHALLENGE = 'Bearer realm="photoenhance", charset="UTF-8"';

/** 401 unless the request carries a valid key; binds the key's name (never the secret) to the request's log lines. */
export function authenticate(config: Readonly<GatewayConfig>): onRequestHookHandler {
  return async function authenticateApiKey(this: FastifyInstance, req: FastifyRequest, reply: FastifyReply): Promise<void> {
    const who = clientIdentity(req, config.apiKeys);
    if (who.kind === 'key') {
      (req.log as unknown as Logger).setBindings({ client: who.name });
      return;
    }
    const path = req.url.split('?')[0] ?? '';
    if (presentedKey(req) === undefined) {
      req.log.debug({ path }, 'request refused: no API key');
      await sendProblem(
        reply,
        new ApiError('API_KEY_REQUIRED', `${req.method} ${path} needs an API key`, { headers: { 'www-authenticate': CHALLENGE } }),
        req.url,
      );
      return;
    }
    req.log.info({ path, ip: req.ip }, 'request refused: API key not recognised');
    await sendProblem(
      reply,
      new ApiError('API_KEY_INVALID', `The API key sent with ${req.method} ${path} is not one of this gateway's keys`, {
        headers: { 'www-authenticate': `${CHALLENGE}, error="invalid_token"` },
      }),
      req.url,
    );
  };
}

/**
 * 404 (as for an unknown id) when the job or batch the route names belongs to another key. Ids that do not exist are
 * left to the route, which answers its own 404/410. Records from before keys were configured have no owner and are
 * nobody's.
 */
export function assertOwner(config: Readonly<GatewayConfig>, redis: Redis, rule: { param: string; kind: Kind }): onRequestHookHandler {
  return async function assertOwnerHook(req: FastifyRequest): Promise<void> {
    const id = (req.params as Record<string, string | undefined>)[rule.param];
    if (!id) return;
    const caller = clientIdentity(req, config.apiKeys);
    const [exists, owner] = await redis.hmget(rule.kind === 'job' ? keys.record(id) : keys.batch(id), 'engine', 'owner');
    if (exists === null) return;
    if (caller.kind !== 'key' || owner !== caller.id) throw notFound(rule.kind, id);
  };
}

/** Attach authentication and ownership checks to every client route registered after this call. */
export function installApiKeyAuth(app: FastifyInstance): void {
  const { config, redis } = app;
  if (config.apiKeys.length === 0) return;
  const auth = authenticate(config);
  const owners = new Map<string, onRequestHookHandler>();
  app.addHook('onRoute', (route: RouteOptions) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    if (!methods.some((m) => isClientRoute(m, route.url))) return;
    const hooks: onRequestHookHandler[] = [auth];
    const rule = ownershipRule(route.url);
    if (rule) {
      let hook = owners.get(`${rule.kind}:${rule.param}`);
      if (!hook) {
        hook = assertOwner(config, redis, rule);
        owners.set(`${rule.kind}:${rule.param}`, hook);
      }
      hooks.push(hook);
    } else if (route.url.includes(':')) {
      // A new route that names something: decide who may see it before it can serve anyone.
      throw new Error(`route ${methods.join(',')} ${route.url} names a resource but auth/api-keys.ts has no ownership rule for it`);
    }
    const existing = route.onRequest;
    route.onRequest = existing ? [...hooks, ...(Array.isArray(existing) ? existing : [existing])] : hooks;
  });
}
