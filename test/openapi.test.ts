import SwaggerParser from '@apidevtools/swagger-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERRORS } from '@photoenhance/contracts';
import { startTestRedis, type TestRedis } from './support/redis.js';
import { startGateway, type RunningGateway } from './support/stack.js';

/**
 * The API reference at /docs/json: a valid OpenAPI document by a real validator (@apidevtools/swagger-parser), every
 * route tagged, answers documented as the routes send them, and problem `type` URIs that resolve on this gateway.
 */

type Doc = { openapi: string; paths: Record<string, Record<string, { tags?: string[]; responses?: Record<string, unknown> }>> };

let redis: TestRedis;
let gw: RunningGateway;
let doc: Doc;
beforeAll(async () => {
  redis = await startTestRedis();
  // No overload check: a loaded test machine would answer 503 OVERLOADED before the route.
  gw = await startGateway(redis.url, { apiKeys: ['reader:openapi-key-0123'], maxEventLoopDelayMs: 0 });
  doc = (await (await fetch(`${gw.url}/docs/json`)).json()) as Doc;
}, 60_000);
afterAll(async () => {
  await gw?.close();
  await redis?.close();
});

describe('/docs/json', () => {
  it('is valid OpenAPI (swagger-parser validates schemas and references)', async () => {
    // validate() dereferences in place: give it a copy.
    await expect(SwaggerParser.validate(structuredClone(doc) as never)).resolves.toBeTruthy();
    expect(doc.openapi).toMatch(/^3\./);
  });

  it('tags every operation', () => {
    const untagged: string[] = [];
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops))
        if (!op.tags?.length || op.tags.includes('default')) untagged.push(`${method.toUpperCase()} ${path}`);
    }
    expect(untagged).toEqual([]);
  });

  it('documents batch submission as 202, as it answers', () => {
    const post = doc.paths['/v1/batches']?.post;
    expect(post, 'POST /v1/batches is documented').toBeDefined();
    expect(Object.keys(post!.responses ?? {})).toContain('202');
    expect(Object.keys(post!.responses ?? {})).not.toContain('200');
  });
});

describe('problem type URIs', () => {
  it('are relative to the gateway and resolve to the catalogue entry', async () => {
    const res = await fetch(`${gw.url}/v1/jobs/j_00000000000000000000`, { headers: { authorization: 'Bearer openapi-key-0123' } });
    const problem = (await res.json()) as { type: string; code: string };
    expect(problem.type).toBe('/docs/errors#JOB_NOT_FOUND');
    const page = await fetch(new URL(problem.type, gw.url));
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toContain('text/html');
    const html = await page.text();
    for (const code of Object.keys(ERRORS)) expect(html).toContain(`id="${code}"`);
  });
});
