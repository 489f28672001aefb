import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BULL_STATES_OF_STATUS, statusOfBullState, type JobDetail, type JobPage, type JobView } from '@photoenhance/contracts';
import { smallPhoto } from './support/images.js';
import { startTestRedis, type TestRedis } from './support/redis.js';
import { startGateway, submit, type RunningGateway } from './support/stack.js';

describe('the one BullMQ state -> public status mapping', () => {
  it.each([
    ['waiting', 'queued'],
    ['prioritized', 'queued'],
    ['delayed', 'queued'],
    ['paused', 'queued'],
    ['waiting-children', 'queued'],
    ['active', 'active'],
    ['completed', 'completed'],
    ['failed', 'failed'],
    ['unknown', 'queued'],
  ])('%s -> %s', (state, status) => {
    expect(statusOfBullState(state)).toBe(status);
  });
  it('every BullMQ state behind a status maps back to it', () => {
    for (const [status, states] of Object.entries(BULL_STATES_OF_STATUS)) for (const s of states) expect(statusOfBullState(s)).toBe(status);
  });
});

/**
 * Through the real gateway: a job in a paused queue. The dashboard's job list had its own copy of the mapping (without
 * "paused", a state BullMQ before 5.x reported for such jobs); the API, the list and the job detail now read the one
 * mapping and the one JobView.
 */
let redis: TestRedis;
let gw: RunningGateway;

beforeAll(async () => {
  redis = await startTestRedis();
  gw = await startGateway(redis.url, { knownEngines: ['classic'] });
});

afterAll(async () => {
  await gw?.close();
  await redis?.close();
});

describe('API and dashboard agree on a job in a paused queue', () => {
  it('GET /v1/jobs/:id, the dashboard job list and the dashboard job detail all say queued', async () => {
    await gw.app.jobs.queue('classic').pause();
    const res = await submit(gw.url, await smallPhoto('jpeg', 64), { scale: '1' });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    expect(['waiting', 'paused']).toContain(await gw.app.jobs.queue('classic').getJobState(id));

    const view = (await (await fetch(`${gw.url}/v1/jobs/${id}`)).json()) as JobView;
    expect(view.status).toBe('queued');
    const page = (await (await fetch(`${gw.url}/dashboard/api/jobs?state=queued`)).json()) as JobPage;
    expect(page.jobs.map((j) => [j.id, j.status])).toEqual([[id, 'queued']]);
    const detail = (await (await fetch(`${gw.url}/dashboard/api/jobs/${id}`)).json()) as JobDetail;
    expect(detail.view).toEqual(view);
  });
});
