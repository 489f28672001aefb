import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance, FastifySchema, RouteOptions } from 'fastify';
import { Type } from '@photoenhance/config';
import {
  HostStateSchema,
  JOB_ID_PATTERN,
  JobAcceptedSchema,
  JobViewSchema,
  ProblemSchema,
  renderErrorCatalogueHtml,
} from '@photoenhance/contracts';
import { JobSubmissionSchema } from './schemas.js';

/**
 * The OpenAPI 3 document at /docs/json (UI at /docs), built by @fastify/swagger from the routes' own schemas.
 * Routes that parse their body by hand (multipart) or send answers without a response schema get their documentation
 * here, through @fastify/swagger's `transform`: it only shapes the document and never changes validation or output.
 * Register before the routes.
 */

type Doc = Partial<Pick<FastifySchema, 'body' | 'params' | 'querystring'>> & {
  summary: string;
  tags: string[];
  consumes?: string[];
  produces?: string[];
  response?: Record<string, unknown>;
  description?: string;
  security?: Array<Record<string, string[]>>;
};

const problem = (description: string) => ({ description, content: { 'application/problem+json': { schema: ProblemSchema } } });
const jobId = Type.Object({ id: Type.String({ pattern: JOB_ID_PATTERN.source }) });
const OPERATOR: Array<Record<string, string[]>> = [{ operatorBearer: [] }, { operatorBasic: [] }, { operatorCookie: [] }];

const DOCS: Record<string, Doc> = {
  'POST /v1/jobs': {
    tags: ['jobs'],
    summary: 'Submit a photo to enhance',
    description:
      'multipart/form-data with the photo in a part named `image` and the options as text fields. Answers 202 with the job id and links; follow `links.events` (SSE) or poll `links.self`.',
    consumes: ['multipart/form-data'],
    body: JobSubmissionSchema,
    response: {
      202: { description: 'Accepted', ...JobAcceptedSchema },
      '4xx': problem('Invalid upload or option'),
      503: problem('Queue unavailable or full'),
    },
  },
  'GET /v1/jobs/:id': {
    tags: ['jobs'],
    summary: 'Job status',
    params: jobId,
    response: { 200: JobViewSchema, 404: problem('Unknown job'), 410: problem('Expired') },
  },
  'DELETE /v1/jobs/:id': {
    tags: ['jobs'],
    summary: 'Cancel a job (deletes its files)',
    params: jobId,
    response: { 200: JobViewSchema, 404: problem('Unknown job') },
  },
  'GET /v1/jobs/:id/result': {
    tags: ['jobs'],
    summary: 'Download the enhanced image',
    params: jobId,
    produces: ['image/png', 'image/jpeg', 'image/webp'],
    response: {
      200: { description: 'The image', type: 'string', format: 'binary' },
      409: problem('Not completed yet'),
      410: problem('Expired'),
    },
  },
  'GET /v1/jobs/:id/events': {
    tags: ['jobs'],
    summary: 'Server-sent events for one job (`status` with the JobView, `progress`), closed after a final status',
    params: jobId,
    produces: ['text/event-stream'],
    response: { 200: { description: 'text/event-stream', type: 'string' } },
  },
  'GET /': {
    tags: ['compat'],
    summary:
      'Service description (PhotoEnhanceAI: service, version, status, endpoints); a browser asking for HTML is redirected to /dashboard',
    response: {
      200: {
        type: 'object',
        properties: {
          service: { type: 'string' },
          version: { type: 'string' },
          status: { type: 'string' },
          endpoints: { type: 'object', additionalProperties: { type: 'string' } },
        },
        additionalProperties: true,
      },
      302: { description: 'To /dashboard (Accept: text/html)' },
    },
  },
  'GET /healthz': {
    tags: ['system'],
    summary: 'Liveness',
    response: { 200: { type: 'object', properties: { status: { type: 'string' }, uptimeSeconds: { type: 'integer' } } } },
  },
  'GET /readyz': {
    tags: ['system'],
    summary: 'Readiness (Redis reachable)',
    response: {
      200: { type: 'object', properties: { status: { type: 'string' }, redis: { type: 'string' }, workers: { type: 'integer' } } },
      503: problem('Redis unreachable'),
    },
  },
  'GET /v1/system': {
    tags: ['system'],
    summary: 'Worker hosts: admission, memory, engine processes',
    response: {
      200: { type: 'object', properties: { hosts: { type: 'array', items: HostStateSchema }, sseClients: { type: 'integer' } } },
    },
  },
  'GET /v1/engines': {
    tags: ['system'],
    summary: 'Engines offered by live workers and configured as known',
    response: { 200: { type: 'object', additionalProperties: true } },
  },
  'PUT /v1/system/hosts/:hostId/admission': {
    tags: ['operator'],
    summary: "Change a host's admission thresholds at run time (`*` for every host)",
    security: OPERATOR,
    response: {
      202: { type: 'object', properties: { hostId: { type: 'string' }, delivered: { type: 'integer' } }, additionalProperties: true },
      401: problem('Operator credential required'),
      404: problem('No such live host'),
    },
  },
};

const BATCH_ID = { type: 'object', properties: { id: { type: 'string', pattern: '^b_[0-9a-z]{20}$' } }, required: ['id'] };
DOCS['POST /v1/batches'] = {
  tags: ['batches'],
  summary: 'Submit many photos (parts named `images`) or one ZIP archive (`archive`) as one batch',
  description:
    'multipart/form-data; the shared options as text fields. Answers 202 with the batch id, counts and links (docs/batches-and-backpressure.md).',
  consumes: ['multipart/form-data'],
  response: {
    202: { description: 'Accepted', type: 'object', additionalProperties: true },
    '4xx': problem('Invalid upload, archive or option'),
    503: problem('Queue unavailable or full, or no worker for the engine'),
  },
};
DOCS['GET /v1/batches/:id'] = {
  tags: ['batches'],
  summary: 'Batch status: counts, progress and every item',
  params: BATCH_ID,
  response: { 200: { type: 'object', additionalProperties: true }, 404: problem('Unknown batch') },
};
DOCS['DELETE /v1/batches/:id'] = {
  tags: ['batches'],
  summary: 'Cancel every unfinished job of a batch',
  params: BATCH_ID,
  response: { 200: { type: 'object', additionalProperties: true }, 404: problem('Unknown batch') },
};

/** Tags by path for routes without their own entry above: nothing lands under "default". */
function tagFor(url: string): string {
  if (url.startsWith('/v1/batches')) return 'batches';
  if (url.startsWith('/v1/jobs')) return 'jobs';
  if (url === '/' || url === '/health' || url.startsWith('/api/v1/')) return 'compat';
  if (url.startsWith('/dashboard') || url.startsWith('/admin/')) return 'operator';
  return 'system';
}

function docFor(route: RouteOptions, url: string): Doc | undefined {
  const methods = Array.isArray(route.method) ? route.method : [route.method];
  for (const m of methods) {
    const d = DOCS[`${m} ${url}`];
    if (d) return d;
  }
  return undefined;
}

export async function registerOpenApi(app: FastifyInstance, opts: { version?: string } = {}): Promise<void> {
  await app.register(swagger, {
    openapi: {
      // 3.1: its schemas are JSON Schema 2020-12, so the routes' own schemas (numeric exclusiveMinimum) are valid as they are.
      openapi: '3.1.0',
      info: {
        title: 'PhotoEnhance Gateway',
        version: opts.version ?? '0.1.0',
        description:
          'Submit photos to enhance, follow jobs, download results. Errors are RFC 9457 problems with codes from the error catalogue.',
      },
      tags: [
        { name: 'jobs', description: 'Submit, follow and download jobs' },
        { name: 'batches', description: 'Many photos as one batch' },
        { name: 'system', description: 'Health, engines and worker hosts' },
        { name: 'compat', description: 'PhotoEnhanceAI-compatible routes (its field names, status words and errors)' },
        { name: 'operator', description: 'Operator endpoints (DASHBOARD_TOKEN, or loopback only when it is unset)' },
      ],
      components: {
        securitySchemes: {
          operatorBearer: { type: 'http', scheme: 'bearer', description: 'DASHBOARD_TOKEN' },
          operatorBasic: { type: 'http', scheme: 'basic', description: 'Any user name, DASHBOARD_TOKEN as the password' },
          operatorCookie: { type: 'apiKey', in: 'cookie', name: 'pe_operator', description: 'Set by POST /dashboard/login' },
        },
      },
    },
    transform({ schema, url, route }) {
      const doc = docFor(route, url);
      const base = (schema ?? {}) as Record<string, unknown>;
      const tagged = url.startsWith('/dashboard/api/') ? { security: OPERATOR } : {};
      if (!doc) return { schema: { tags: [tagFor(url)], ...base, ...tagged } as FastifySchema, url };
      // Route-declared parts win: they are what is validated.
      return { schema: { ...doc, ...base, ...tagged } as FastifySchema, url };
    },
  });
  // No staticCSP: the gateway-wide policy (auth/security-headers.ts) covers /docs; swagger-ui's own would add
  // upgrade-insecure-requests (breaking /docs over plain http) and block the inline styles it uses.
  await app.register(swaggerUi, { routePrefix: '/docs', uiConfig: { docExpansion: 'list', deepLinking: true } });
  // The error catalogue, where every problem's `type` (/docs/errors#CODE) points.
  const catalogue = renderErrorCatalogueHtml();
  app.get(
    '/docs/errors',
    { schema: { tags: ['system'], summary: 'The error catalogue (HTML, one anchor per code): the target of every problem `type`' } },
    async (_req, reply) => reply.type('text/html; charset=utf-8').header('cache-control', 'public, max-age=300').send(catalogue),
  );
}
