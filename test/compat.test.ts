import { existsSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestRedis } from './support/redis.js';
import { smallPhoto } from './support/images.js';
import { fixtureEngine, startGateway, startStack, until, type RunningGateway, type Stack } from './support/stack.js';
import { readZip } from './support/zip.js';

/** A PhotoEnhanceAI client's round trip against the compatibility routes (BRIEF §3). */
let redis: TestRedis;
let gw: RunningGateway;

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({
    gateway: { knownEngines: ['paced'], defaultEngine: 'paced' },
    engines: [fixtureEngine('paced', 'resize', 30, { poolSize: 2 })],
  });
  ({ redis, gw } = stack);
});

afterAll(() => stack?.close());

async function enhance(file: Buffer, name: string, opts: { query?: string; form?: Record<string, string> } = {}): Promise<Response> {
  const form = new FormData();
  for (const [k, v] of Object.entries(opts.form ?? {})) form.append(k, v);
  form.append('file', new Blob([file]), name);
  return fetch(`${gw.url}/api/v1/enhance${opts.query ? `?${opts.query}` : ''}`, { method: 'POST', body: form });
}

async function statusOf(id: string): Promise<Record<string, unknown>> {
  return (await (await fetch(`${gw.url}/api/v1/status/${id}`)).json()) as Record<string, unknown>;
}

describe('single task', () => {
  it('round trip with query parameters: a PNG stays a PNG, named <stem>_enhanced.png', async () => {
    const res = await enhance(await smallPhoto('png', 64), 'portrait.png', { query: 'tile_size=256&quality_level=fast' });
    expect(res.status).toBe(200);
    const created = (await res.json()) as { task_id: string; status: string; message: string; created_at: number };
    expect(created).toMatchObject({ status: 'queued' });
    expect(typeof created.created_at).toBe('number');
    const done = await until(
      'completed',
      async () => {
        const s = await statusOf(created.task_id);
        return s.status === 'completed' ? s : undefined;
      },
      30_000,
      50,
    );
    expect(done).toMatchObject({ task_id: created.task_id, progress: 1, result_url: `/api/v1/download/${created.task_id}`, error: null });
    for (const k of ['created_at', 'updated_at', 'processing_time']) expect(typeof done[k]).toBe('number');
    const view = (await (await fetch(`${gw.url}/v1/jobs/${created.task_id}`)).json()) as { options: Record<string, unknown> };
    expect(view.options).toMatchObject({ bgTile: 256, bgUpsampler: 'none', scale: 2, format: 'png' });
    const dl = await fetch(`${gw.url}/api/v1/download/${created.task_id}`);
    expect(dl.status).toBe(200);
    expect(dl.headers.get('content-type')).toBe('image/png');
    expect(dl.headers.get('content-disposition')).toContain('filename="portrait_enhanced.png"');
    expect((await sharp(Buffer.from(await dl.arrayBuffer())).metadata()).format).toBe('png');
  });

  it('form fields are read too (and win over the query); bad parameters → 422 {detail}', async () => {
    const res = await enhance(await smallPhoto('jpeg', 48), 'a.jpg', {
      query: 'tile_size=300',
      form: { tile_size: '480', quality_level: 'medium' },
    });
    const { task_id } = (await res.json()) as { task_id: string };
    const view = (await (await fetch(`${gw.url}/v1/jobs/${task_id}`)).json()) as { options: Record<string, unknown> };
    expect(view.options).toMatchObject({ bgTile: 480, bgUpsampler: 'realesrgan', quality: 85 });
    for (const q of ['tile_size=100', 'tile_size=abc', 'quality_level=ultra']) {
      const bad = await enhance(await smallPhoto('jpeg', 16), 'a.jpg', { query: q });
      expect(bad.status, q).toBe(422);
      expect(typeof ((await bad.json()) as { detail: unknown }).detail).toBe('string');
    }
    const notImage = await enhance(Buffer.from('hello, not an image'), 'a.jpg');
    expect(notImage.status).toBe(400);
    expect(Object.keys((await notImage.json()) as object)).toEqual(['detail']);
    const badExt = await enhance(await smallPhoto('jpeg', 16), 'a.gif');
    expect(badExt.status).toBe(400);
  });

  it('unknown → 404; download before completion → 400; delete removes only that task; the task list shows tasks', async () => {
    expect((await fetch(`${gw.url}/api/v1/status/nope`)).status).toBe(404);
    expect(await (await fetch(`${gw.url}/api/v1/status/j_00000000000000000000`)).json()).toEqual({ detail: 'Task not found' });
    const a = ((await (await enhance(await smallPhoto('jpeg', 32), 'a.jpg')).json()) as { task_id: string }).task_id;
    const b = ((await (await enhance(await smallPhoto('jpeg', 32), 'b.jpg')).json()) as { task_id: string }).task_id;
    await until(
      'both done',
      async () => (await statusOf(a)).status === 'completed' && (await statusOf(b)).status === 'completed',
      30_000,
      50,
    );
    const del = await fetch(`${gw.url}/api/v1/tasks/${a}`, { method: 'DELETE' });
    expect(del.status).toBe(200);
    expect(typeof ((await del.json()) as { message: string }).message).toBe('string');
    expect((await fetch(`${gw.url}/api/v1/status/${a}`)).status).toBe(404);
    expect(existsSync(join(gw.storageDir, a))).toBe(false);
    expect(existsSync(join(gw.storageDir, b))).toBe(true);
    expect(existsSync(gw.storageDir)).toBe(true);
    expect((await fetch(`${gw.url}/api/v1/download/${b}`)).status).toBe(200);
    const list = (await (await fetch(`${gw.url}/api/v1/tasks`)).json()) as { total_tasks: number; tasks: Array<{ task_id: string }> };
    expect(list.tasks.map((t) => t.task_id)).toContain(b);
    expect(list.tasks.map((t) => t.task_id)).not.toContain(a);
    const health = (await (await fetch(`${gw.url}/health`)).json()) as Record<string, unknown>;
    expect(health).toMatchObject({ status: 'healthy', model_status: { initialized: true } });
  });

  it('with API keys, the task list shows only the caller’s tasks', async () => {
    const keyed = await startGateway(
      redis.url,
      { knownEngines: ['paced'], defaultEngine: 'paced', apiKeys: ['alice-key-123', 'bob-key-4567'] },
      gw.storageDir,
    );
    try {
      const post = async (key: string): Promise<string> => {
        const form = new FormData();
        form.append('file', new Blob([await smallPhoto('jpeg', 16)]), 'k.jpg');
        return (
          (await (
            await fetch(`${keyed.url}/api/v1/enhance`, { method: 'POST', body: form, headers: { authorization: `Bearer ${key}` } })
          ).json()) as { task_id: string }
        ).task_id;
      };
      const alice = await post('alice-key-123');
      const bob = await post('bob-key-4567');
      const list = async (headers: Record<string, string>): Promise<string[]> =>
        ((await (await fetch(`${keyed.url}/api/v1/tasks`, { headers })).json()) as { tasks: Array<{ task_id: string }> }).tasks.map(
          (t) => t.task_id,
        );
      expect(await list({ authorization: 'Bearer alice-key-123' })).toEqual([alice]);
      expect(await list({ 'x-api-key': 'bob-key-4567' })).toEqual([bob]);
      // Without a key the compat routes answer 401 (auth/api-keys.ts; test/access-control.test.ts covers it all).
      expect((await fetch(`${keyed.url}/api/v1/tasks`)).status).toBe(401);
    } finally {
      await keyed.close();
    }
  });
});

describe('batch', () => {
  it('round trip: files with the same name → batch status → ZIP with unique original names', async () => {
    const form = new FormData();
    form.append('quality_level', 'high');
    form.append('files', new Blob([await smallPhoto('jpeg', 40)]), 'same.jpg');
    form.append('files', new Blob([await smallPhoto('jpeg', 44)]), 'same.jpg');
    form.append('files', new Blob([await smallPhoto('png', 40)]), 'pic.png');
    const res = await fetch(`${gw.url}/api/v1/enhance/batch?tile_size=300`, { method: 'POST', body: form });
    expect(res.status).toBe(200);
    const created = (await res.json()) as { batch_task_id: string; total_files: number; status: string; sub_tasks: string[] };
    expect(created).toMatchObject({ total_files: 3, status: 'queued' });
    expect(created.sub_tasks).toHaveLength(3);
    const early = await fetch(`${gw.url}/api/v1/batch/download/${created.batch_task_id}`);
    if (early.status !== 200) expect(early.status).toBe(400);
    const done = await until(
      'batch completed',
      async () => {
        const s = (await (await fetch(`${gw.url}/api/v1/batch/status/${created.batch_task_id}`)).json()) as Record<string, unknown>;
        return s.status === 'completed' ? s : undefined;
      },
      30_000,
      50,
    );
    expect(done).toMatchObject({ total_files: 3, completed_files: 3, failed_files: 0, progress: 1 });
    expect((done.sub_tasks as Array<Record<string, unknown>>).map((t) => t.filename)).toEqual(['same.jpg', 'same.jpg', 'pic.png']);
    const view = (await (await fetch(`${gw.url}/v1/jobs/${created.sub_tasks[0]}`)).json()) as { options: Record<string, unknown> };
    expect(view.options).toMatchObject({ bgTile: 300, quality: 95 });
    const zipRes = await fetch(`${gw.url}/api/v1/batch/download/${created.batch_task_id}`);
    expect(zipRes.status).toBe(200);
    expect(zipRes.headers.get('content-disposition')).toContain(`batch_results_${created.batch_task_id}.zip`);
    const entries = await readZip(Buffer.from(await zipRes.arrayBuffer()));
    expect([...entries.keys()].sort()).toEqual(['pic.png', 'same (2).jpg', 'same.jpg']);
    expect((await sharp(entries.get('pic.png')!).metadata()).format).toBe('png');
  });

  it('more than 20 files → 400 {detail}', async () => {
    const form = new FormData();
    const jpeg = await smallPhoto('jpeg', 16);
    for (let i = 0; i < 21; i++) form.append('files', new Blob([jpeg]), `f${i}.jpg`);
    const res = await fetch(`${gw.url}/api/v1/enhance/batch`, { method: 'POST', body: form });
    expect(res.status).toBe(400);
    expect(typeof ((await res.json()) as { detail: unknown }).detail).toBe('string');
  });
});
