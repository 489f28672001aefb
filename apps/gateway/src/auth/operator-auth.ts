import { createHmac, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from 'fastify';
import { ApiError } from '@photoenhance/contracts';
import type { GatewayConfig } from '../config.js';
import { sendProblem } from '../problems.js';

/**
 * Operator access control for the dashboard, its API, bull-board and the operator write endpoints.
 *
 * - With DASHBOARD_TOKEN set, a request is an operator's when it carries the token as `Authorization: Bearer <token>`,
 *   `X-Operator-Token: <token>`, the password of HTTP basic auth (any user name), or the session cookie that
 *   POST /dashboard/login sets (an HMAC of the token, HttpOnly, SameSite=Strict, so it cannot be replayed cross-site).
 * - Without a token, operator routes are served only while the gateway binds a loopback address (HOST=127.0.0.1, ::1,
 *   localhost); on any other binding they answer 403 OPERATOR_ACCESS_DISABLED, saying to set DASHBOARD_TOKEN.
 * - With API_KEYS set there are several clients, and the operator pages list every client's jobs: then they need
 *   DASHBOARD_TOKEN even on loopback (403 OPERATOR_TOKEN_REQUIRED without one), because a client that reaches the
 *   loopback port (a reverse proxy on the host, a shared machine) must not read other clients' job ids there.
 * - State-changing operator requests (anything but GET/HEAD/OPTIONS) must be same-origin: an `Origin` header naming
 *   this gateway (its Host, or PUBLIC_URL), or no `Origin` and a JSON body type, which a cross-site form or a
 *   "simple" cross-origin fetch cannot send without a CORS preflight (which this gateway never grants). Otherwise
 *   403 CROSS_ORIGIN_REFUSED: a page on another site cannot pause queues through a loopback gateway without a token.
 */

export const OPERATOR_COOKIE = 'pe_operator';

/** Route prefixes that belong to operators; `/dashboard/login` itself stays open. */
const OPERATOR_PREFIXES = ['/dashboard', '/admin/queues'];
const OPEN_ROUTES = new Set(['/dashboard/login', '/dashboard/logout']);
/** Operator write endpoints outside those prefixes, as `METHOD url-pattern`. */
const OPERATOR_ROUTES = new Set(['PUT /v1/system/hosts/:hostId/admission']);

export function isOperatorRoute(method: string, url: string): boolean {
  if (OPEN_ROUTES.has(url)) return false;
  if (OPERATOR_ROUTES.has(`${method} ${url}`)) return true;
  return OPERATOR_PREFIXES.some((p) => url === p || url.startsWith(`${p}/`));
}

export function isLoopbackHost(host: string): boolean {
  const h = host
    .trim()
    .toLowerCase()
    .replace(/^\[|\]$/g, '');
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (h === '::1') return true;
  if (h.startsWith('::ffff:')) return h.slice(7).startsWith('127.');
  return false;
}

export function sessionValue(token: string): string {
  return createHmac('sha256', token).update('photoenhance-operator-session-v1').digest('base64url');
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) return decodeURIComponent(part.slice(i + 1).trim());
  }
  return undefined;
}

/** Whether the request carries the operator credential. */
export function hasOperatorCredential(req: FastifyRequest, token: string): boolean {
  const auth = req.headers.authorization ?? '';
  const bearer = /^Bearer\s+(.+)$/i.exec(auth)?.[1]?.trim();
  if (bearer && safeEqual(bearer, token)) return true;
  const basic = /^Basic\s+(.+)$/i.exec(auth)?.[1];
  if (basic) {
    const decoded = Buffer.from(basic, 'base64').toString('utf8');
    const password = decoded.slice(decoded.indexOf(':') + 1);
    if (safeEqual(password, token)) return true;
  }
  const header = req.headers['x-operator-token'];
  if (typeof header === 'string' && safeEqual(header.trim(), token)) return true;
  const cookie = readCookie(req.headers.cookie, OPERATOR_COOKIE);
  return cookie !== undefined && safeEqual(cookie, sessionValue(token));
}

function wantsHtml(req: FastifyRequest): boolean {
  return req.method === 'GET' && (req.headers.accept ?? '').includes('text/html');
}

export type OperatorGuard = (req: FastifyRequest, reply: FastifyReply) => Promise<void>;

export function operatorGuard(config: Readonly<GatewayConfig>): OperatorGuard {
  const token = config.dashboardToken;
  const loopback = isLoopbackHost(config.host);
  return async (req, reply) => {
    if (!token) {
      if (config.apiKeys.length > 0) {
        await sendProblem(
          reply,
          new ApiError(
            'OPERATOR_TOKEN_REQUIRED',
            `${req.method} ${req.url.split('?')[0]} shows every client's jobs and API_KEYS is set, but no DASHBOARD_TOKEN is configured`,
          ),
          req.url,
        );
        return;
      }
      if (loopback) return;
      await sendProblem(
        reply,
        new ApiError(
          'OPERATOR_ACCESS_DISABLED',
          `Operator pages are off: no DASHBOARD_TOKEN is configured and the gateway binds ${config.host}, which is not a loopback address`,
        ),
        req.url,
      );
      return;
    }
    if (hasOperatorCredential(req, token)) return;
    if (wantsHtml(req) && !req.url.startsWith('/dashboard/api/')) {
      // A person in a browser: send them to the sign-in form and back.
      await reply.redirect(`/dashboard/login?next=${encodeURIComponent(req.url)}`, 303);
      return;
    }
    await sendProblem(
      reply,
      new ApiError('OPERATOR_AUTH_REQUIRED', `${req.method} ${req.url.split('?')[0]} is for operators`, {
        headers: { 'www-authenticate': 'Bearer realm="photoenhance-operator", Basic realm="photoenhance-operator", charset="UTF-8"' },
      }),
      req.url,
    );
  };
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

function isJsonType(header: string | undefined): boolean {
  const type = (header ?? '').split(';')[0]!.trim().toLowerCase();
  return type === 'application/json' || /^application\/[a-z0-9.+-]+\+json$/.test(type);
}

/** Whether a state-changing request comes from this gateway's own pages (or from a script, not a browser page). */
export function isSameOrigin(req: FastifyRequest, publicUrl: string | undefined): boolean {
  const origin = req.headers.origin;
  if (origin === undefined) return isJsonType(req.headers['content-type']);
  let from: URL;
  try {
    from = new URL(origin);
  } catch {
    return false; // "null" (sandboxed frames, file:) and garbage
  }
  if (from.protocol !== 'http:' && from.protocol !== 'https:') return false;
  if (publicUrl) {
    try {
      if (new URL(publicUrl).origin === from.origin) return true;
    } catch {
      // an unparsable PUBLIC_URL names no origin
    }
  }
  const host = req.headers.host;
  if (!host) return false;
  try {
    // Through the URL parser, so default ports and letter case compare equal.
    return new URL(`${from.protocol}//${host}`).host === from.host;
  } catch {
    return false;
  }
}

export function sameOriginGuard(config: Readonly<GatewayConfig>): OperatorGuard {
  return async (req, reply) => {
    if (SAFE_METHODS.has(req.method) || isSameOrigin(req, config.publicUrl)) return;
    const origin = typeof req.headers.origin === 'string' ? req.headers.origin.slice(0, 200) : undefined;
    req.log.warn({ origin, contentType: req.headers['content-type'] }, 'operator request refused: not same-origin');
    await sendProblem(
      reply,
      new ApiError(
        'CROSS_ORIGIN_REFUSED',
        origin !== undefined
          ? `${req.method} ${req.url.split('?')[0]} came from the origin ${JSON.stringify(origin)}, not from this gateway`
          : `${req.method} ${req.url.split('?')[0]} carries neither an Origin header nor a JSON Content-Type`,
      ),
      req.url,
    );
  };
}

/**
 * Attach the guard to every operator route, whoever registers it (routes/system.ts, the dashboard, bull-board):
 * call this before those routes are added. State-changing ones also get the same-origin check, after the credential
 * check (so a request without credentials still learns that it needs them).
 */
export function installOperatorAuth(app: FastifyInstance): void {
  const { config } = app;
  const guard = operatorGuard(config);
  const sameOrigin = sameOriginGuard(config);
  app.addHook('onRoute', (route: RouteOptions) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    if (!methods.some((m) => isOperatorRoute(m, route.url))) return;
    const mine = methods.every((m) => SAFE_METHODS.has(m)) ? [guard] : [guard, sameOrigin];
    const existing = route.onRequest;
    route.onRequest = existing ? [...mine, ...(Array.isArray(existing) ? existing : [existing])] : mine;
  });
  app.register(loginRoutes, { config });
}

const LOGIN_PAGE = (next: string, failed: boolean): string => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Sign in · PhotoEnhance</title>
<style>body{font:15px system-ui,sans-serif;background:#0f172a;color:#e2e8f0;display:grid;place-items:center;height:100vh;margin:0}
form{background:#1e293b;padding:28px 32px;border-radius:10px;min-width:320px;box-shadow:0 10px 30px #0006}
h1{font-size:18px;margin:0 0 16px}input{width:100%;box-sizing:border-box;padding:9px;border-radius:6px;border:1px solid #475569;background:#0f172a;color:inherit}
button{margin-top:14px;padding:9px 16px;border:0;border-radius:6px;background:#3b82f6;color:#fff;font-weight:600;cursor:pointer}
.err{color:#fca5a5;margin:0 0 10px}.hint{color:#94a3b8;font-size:13px;margin-top:14px}</style></head>
<body><form method="post" action="/dashboard/login"><h1>PhotoEnhance operator sign-in</h1>
${failed ? '<p class="err">That token is not right.</p>' : ''}
<label for="token">Operator token (DASHBOARD_TOKEN)</label>
<input id="token" name="token" type="password" autocomplete="current-password" autofocus required>
<input type="hidden" name="next" value="${next.replace(/[&"<>]/g, (c) => `&#${c.charCodeAt(0)};`)}">
<button type="submit">Sign in</button>
<p class="hint">Scripts can send <code>Authorization: Bearer &lt;token&gt;</code> instead.</p></form></body></html>`;

/** Only same-site relative paths under the operator prefixes are followed after sign-in. */
function safeNext(next: unknown): string {
  if (typeof next !== 'string' || !next.startsWith('/') || next.startsWith('//')) return '/dashboard/';
  return OPERATOR_PREFIXES.some((p) => next === p || next.startsWith(`${p}/`) || next.startsWith(`${p}?`) || next.startsWith(`${p}#`))
    ? next
    : '/dashboard/';
}

async function loginRoutes(app: FastifyInstance, opts: { config: Readonly<GatewayConfig> }): Promise<void> {
  const { config } = opts;
  // Form posts only here (this plugin's scope): the rest of the API keeps its own parsers.
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 4096 }, (_req, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(body as string)));
  });
  const secure = (config.publicUrl ?? '').startsWith('https:') ? '; Secure' : '';

  app.get<{ Querystring: { next?: string; failed?: string } }>('/dashboard/login', { schema: { hide: true } }, async (req, reply) => {
    if (!config.dashboardToken) return reply.redirect(safeNext(req.query.next), 303);
    return reply
      .type('text/html; charset=utf-8')
      .header('cache-control', 'no-store')
      .send(LOGIN_PAGE(safeNext(req.query.next), req.query.failed === '1'));
  });

  app.post<{ Body: { token?: string; next?: string } | undefined }>('/dashboard/login', { schema: { hide: true } }, async (req, reply) => {
    const token = config.dashboardToken;
    const next = safeNext(req.body?.next);
    if (!token) return reply.redirect(next, 303);
    const given = typeof req.body?.token === 'string' ? req.body.token.trim() : '';
    if (!safeEqual(given, token)) return reply.redirect(`/dashboard/login?failed=1&next=${encodeURIComponent(next)}`, 303);
    reply.header(
      'set-cookie',
      `${OPERATOR_COOKIE}=${sessionValue(token)}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${12 * 3600}${secure}`,
    );
    return reply.redirect(next, 303);
  });

  app.post('/dashboard/logout', { schema: { hide: true } }, async (_req, reply) => {
    reply.header('set-cookie', `${OPERATOR_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0${secure}`);
    return reply.redirect('/dashboard/login', 303);
  });
}
