import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BatchAccepted, BatchView } from '@photoenhance/contracts';
import { smallPhoto } from './support/images.js';
import { fixtureEngine, startStack, until, waitForStatus, type RunningGateway, type Stack } from './support/stack.js';
import { makeZip, readSse, readZip, zipWithTraversal } from './support/zip.js';

/** Batches end to end: multipart and ZIP submissions, progress while running, results.zip, cancel, SSE with resume. */
let gw: RunningGateway;

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({
    gateway: { knownEngines: ['paced', 'slow'], defaultEngine: 'paced', maxBatchItems: 6, maxArchiveRatio: 20, maxUploadBytes: 512 * 1024 },
    engines: [
      // One at a time with a short pause per photo, so a batch is observably "running" for a while.
      fixtureEngine('paced', 'resize', 250, { poolSize: 1 }),
      fixtureEngine('slow', 'sleep', 30_000, { poolSize: 1, stopGraceMs: 1000 }),
    ],
  });
  ({ gw } = stack);
});

afterAll(() => stack?.close());

async function postBatch(form: FormData, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${gw.url}/v1/batches`, { method: 'POST', body: form, headers });
}

async function batchView(id: string): Promise<BatchView> {
  return (await (await fetch(`${gw.url}/v1/batches/${id}`)).json()) as BatchView;
}

async function problem(res: Response): Promise<Record<string, unknown>> {
  expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  return (await res.json()) as Record<string, unknown>;
}

describe('POST /v1/batches (multipart images)', () => {
  it('runs every item, shows progress while running, streams results.zip while running with unique names', async () => {
    const jpeg = await smallPhoto('jpeg', 96);
    const png = await smallPhoto('png', 80);
    const form = new FormData();
    form.append('scale', '1');
    for (const [data, name, type] of [
      [jpeg, 'a.jpg', 'image/jpeg'],
      [jpeg, 'a.jpg', 'image/jpeg'],
      [png, 'b.png', 'image/png'],
      [jpeg, 'c.jpg', 'image/jpeg'],
    ] as const) {
      form.append('images', new Blob([data], { type }), name);
    }
    form.append('images', new Blob([Buffer.from('not a photo at all')], { type: 'image/jpeg' }), 'notes.jpg');
    const res = await postBatch(form);
    expect(res.status).toBe(202);
    const accepted = (await res.json()) as BatchAccepted;
    expect(accepted).toMatchObject({ total: 5, accepted: 4, rejected: 1 });
    expect(res.headers.get('location')).toBe(accepted.links.self);

    // Progress is visible while running: some completed, some not.
    const mid = await until(
      'a batch with some items done and some not',
      async () => {
        const v = await batchView(accepted.id);
        return v.counts.completed >= 1 && v.counts.completed < 4 ? v : undefined;
      },
      30_000,
      30,
    );
    expect(mid.status).toBe('running');
    expect(mid.progress).toBeGreaterThan(0);
    expect(mid.progress).toBeLessThan(1);
    expect(mid.items[4]).toMatchObject({ name: 'notes.jpg', status: 'failed', error: { code: 'UNSUPPORTED_MEDIA_TYPE' } });
    expect(mid.items.map((i) => i.resultName)).toEqual([
      'a_enhanced.jpg',
      'a_enhanced (2).jpg',
      'b_enhanced.png',
      'c_enhanced.jpg',
      'notes_enhanced.png',
    ]);

    // results.zip while running: what is done so far.
    const early = await fetch(`${gw.url}${accepted.links.results}`);
    expect(early.status).toBe(200);
    expect(early.headers.get('content-type')).toBe('application/zip');
    const earlyEntries = await readZip(Buffer.from(await early.arrayBuffer()));
    expect(earlyEntries.size).toBeGreaterThanOrEqual(1);
    expect(earlyEntries.size).toBeLessThan(4);

    const done = await until(
      'batch final',
      async () => {
        const v = await batchView(accepted.id);
        return v.status === 'partial' ? v : undefined;
      },
      30_000,
      100,
    );
    expect(done.counts).toMatchObject({ completed: 4, failed: 1, queued: 0, active: 0 });
    expect(done.progress).toBe(1);
    const full = await readZip(Buffer.from(await (await fetch(`${gw.url}${accepted.links.results}`)).arrayBuffer()));
    expect([...full.keys()].sort()).toEqual(['a_enhanced (2).jpg', 'a_enhanced.jpg', 'b_enhanced.png', 'c_enhanced.jpg']);
    expect((await sharp(full.get('b_enhanced.png')!).metadata()).format).toBe('png');
  });

  it('refuses the whole batch for request-level problems: too many items, bad shared option, no photos', async () => {
    const jpeg = await smallPhoto('jpeg', 32);
    const many = new FormData();
    for (let i = 0; i < 7; i++) many.append('images', new Blob([jpeg]), `p${i}.jpg`);
    const tooMany = await postBatch(many);
    expect(tooMany.status).toBe(413);
    expect((await problem(tooMany)).code).toBe('BATCH_TOO_LARGE');

    const badOpt = new FormData();
    badOpt.append('scale', '3');
    badOpt.append('images', new Blob([jpeg]), 'x.jpg');
    expect((await problem(await postBatch(badOpt))).code).toBe('INVALID_OPTION');

    const empty = new FormData();
    empty.append('scale', '1');
    expect((await problem(await postBatch(empty))).code).toBe('IMAGE_REQUIRED');
    // Nothing of the refused batches is left in storage.
    const dirs = readdirSync(gw.storageDir).filter((d) => d.startsWith('b_'));
    expect(dirs).toEqual([]);
  });

  it('an oversized photo is recorded as a failed item; the rest of the body is still read', async () => {
    const jpeg = await smallPhoto('jpeg', 48);
    const huge = Buffer.concat([jpeg, Buffer.alloc(600 * 1024, 1)]);
    const form = new FormData();
    form.append('scale', '1');
    form.append('images', new Blob([huge]), 'huge.jpg');
    form.append('images', new Blob([jpeg]), 'ok.jpg');
    const res = await postBatch(form);
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as BatchAccepted;
    const v = await until(
      'batch final',
      async () => {
        const b = await batchView(id);
        return b.status === 'partial' ? b : undefined;
      },
      30_000,
      100,
    );
    expect(v.items[0]).toMatchObject({ name: 'huge.jpg', status: 'failed', error: { code: 'IMAGE_TOO_LARGE' } });
    expect(v.items[1]).toMatchObject({ name: 'ok.jpg', status: 'completed' });
  });
});

describe('POST /v1/batches (ZIP archive)', () => {
  async function postZip(zip: Buffer): Promise<Response> {
    const form = new FormData();
    form.append('scale', '1');
    form.append('archive', new Blob([zip], { type: 'application/zip' }), 'photos.zip');
    return postBatch(form);
  }

  it('extracts the photos of a plain archive; entry names are display names only', async () => {
    const jpeg = await smallPhoto('jpeg', 64);
    const zip = await makeZip([
      { name: 'trip/one.jpg', data: jpeg },
      { name: 'trip/sub/one.jpg', data: jpeg },
      { name: '__MACOSX/trip/._one.jpg', data: Buffer.from('resource fork') },
    ]);
    const res = await postZip(zip);
    expect(res.status).toBe(202);
    const { id, total } = (await res.json()) as BatchAccepted;
    expect(total).toBe(2);
    let last: BatchView | undefined;
    const v = await until(
      'archive batch completed',
      async () => {
        const b = await batchView(id);
        last = b;
        return b.status === 'completed' ? b : undefined;
      },
      10_000,
      100,
    ).catch((err: Error) => {
      throw new Error(`${err.message}: ${JSON.stringify(last)}`);
    });
    expect(v.items.map((i) => [i.name, i.resultName])).toEqual([
      ['one.jpg', 'one_enhanced.jpg'],
      ['one.jpg', 'one_enhanced (2).jpg'],
    ]);
    expect(existsSync(join(gw.storageDir, id))).toBe(false);
  });

  it('refuses an archive bomb (compression ratio), too many entries, nested archives and ../ names with ARCHIVE_REFUSED', async () => {
    const jpeg = await smallPhoto('jpeg', 32);
    const bomb = await makeZip([{ name: 'big.jpg', data: Buffer.alloc(8 * 1024 * 1024), compress: true }]);
    expect(bomb.length).toBeLessThan(64 * 1024);
    const b = await problem(await postZip(bomb));
    expect(b).toMatchObject({ status: 422, code: 'ARCHIVE_REFUSED', reason: 'compression-ratio' });

    const many = await makeZip(Array.from({ length: 7 }, (_, i) => ({ name: `p${i}.jpg`, data: jpeg })));
    expect(await problem(await postZip(many))).toMatchObject({ code: 'ARCHIVE_REFUSED', reason: 'too-many-entries' });

    const inner = await makeZip([{ name: 'x.jpg', data: jpeg }]);
    expect(await problem(await postZip(await makeZip([{ name: 'inner.zip', data: inner }])))).toMatchObject({
      code: 'ARCHIVE_REFUSED',
      reason: 'nested-archive',
    });
    // Disguised by its name: still refused by content.
    expect(await problem(await postZip(await makeZip([{ name: 'inner.jpg', data: inner }])))).toMatchObject({
      code: 'ARCHIVE_REFUSED',
      reason: 'nested-archive',
    });

    const evil = await zipWithTraversal('evil.jpg', jpeg);
    const t = await problem(await postZip(evil));
    expect(t).toMatchObject({ code: 'ARCHIVE_REFUSED', reason: 'unsafe-entry-name', entry: '../evil.jpg' });
    expect(existsSync(join(gw.storageDir, '..', 'evil.jpg'))).toBe(false);

    expect(await problem(await postZip(Buffer.from('PK\u0003\u0004 but not really a zip file at all')))).toMatchObject({
      code: 'ARCHIVE_REFUSED',
      reason: 'not-a-zip',
    });
    expect(readdirSync(gw.storageDir).filter((d) => d.startsWith('b_'))).toEqual([]);
  });
});

describe('cancel and events', () => {
  it('DELETE /v1/batches/:id cancels what has not finished', async () => {
    const jpeg = await smallPhoto('jpeg', 32);
    const form = new FormData();
    form.append('engine', 'slow');
    for (let i = 0; i < 3; i++) form.append('images', new Blob([jpeg]), `s${i}.jpg`);
    const { id } = (await (await postBatch(form)).json()) as BatchAccepted;
    await until('an item active', async () => (await batchView(id)).counts.active === 1, 30_000, 50);
    const del = await fetch(`${gw.url}/v1/batches/${id}`, { method: 'DELETE' });
    expect(del.status).toBe(200);
    let last: BatchView | undefined;
    const v = await until(
      'all canceled',
      async () => {
        const b = await batchView(id);
        last = b;
        return b.counts.canceled === 3 ? b : undefined;
      },
      10_000,
      100,
    ).catch((err: Error) => {
      throw new Error(`${err.message}: ${JSON.stringify(last)}`);
    });
    expect(v.status).toBe('canceled');
    expect(v.canceledAt).toBeTruthy();
  });

  it('a client that connects after every item ended still gets each item once, then the final status', async () => {
    const jpeg = await smallPhoto('jpeg', 40);
    const form = new FormData();
    form.append('scale', '1');
    for (let i = 0; i < 3; i++) form.append('images', new Blob([jpeg]), `late${i}.jpg`);
    const { id } = (await (await postBatch(form)).json()) as BatchAccepted;
    await until('the batch to finish', async () => (await batchView(id)).status === 'completed', 30_000, 50);
    const events = await readSse(await fetch(`${gw.url}/v1/batches/${id}/events`), () => false);
    const items = events.filter((e) => e.event === 'item');
    expect(items.map((e) => (e.data as { status: string; index: number }).status)).toEqual(['completed', 'completed', 'completed']);
    expect(new Set(items.map((e) => (e.data as { index: number }).index)).size).toBe(3);
    expect(events.at(-1)).toMatchObject({ event: 'status', data: { status: 'completed' } });
  });

  it('GET /v1/batches/:id/events streams item changes and the final status; job events resume from Last-Event-ID', async () => {
    const jpeg = await smallPhoto('jpeg', 40);
    const form = new FormData();
    form.append('scale', '1');
    for (let i = 0; i < 2; i++) form.append('images', new Blob([jpeg]), `e${i}.jpg`);
    const { id } = (await (await postBatch(form)).json()) as BatchAccepted;
    const res = await fetch(`${gw.url}/v1/batches/${id}/events`);
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const events = await readSse(res, () => false);
    const statuses = events.filter((e) => e.event === 'status').map((e) => (e.data as { status: string }).status);
    expect(statuses[0]).toMatch(/queued|running/);
    expect(statuses.at(-1)).toBe('completed');
    expect(events.filter((e) => e.event === 'item' && (e.data as { status: string }).status === 'completed')).toHaveLength(2);
    for (const e of events) expect(e.id).toMatch(/^\d+-\d+$/);

    // Job events: first connection, then a resume from the first event id after the job finished.
    const view = await batchView(id);
    const jobId = view.items[0]!.jobId!;
    const first = await readSse(await fetch(`${gw.url}/v1/jobs/${jobId}/events`), () => true);
    expect(first[0]).toMatchObject({ event: 'status', data: { status: 'completed' } });
    // A client that last saw an event from before the job ran gets the current view on reconnect.
    const resumed = await readSse(await fetch(`${gw.url}/v1/jobs/${jobId}/events`, { headers: { 'last-event-id': '0-0' } }), () => false);
    expect(resumed.map((e) => e.event)).toEqual(['status']);
    expect(resumed[0]!.data).toMatchObject({ status: 'completed' });
  });

  it('job SSE resume: reconnecting mid-job replays nothing stale and continues to the final status', async () => {
    const form = new FormData();
    form.append('scale', '1');
    form.append('image', new Blob([await smallPhoto('jpeg', 40)]), 'r.jpg');
    const { id } = (await (await fetch(`${gw.url}/v1/jobs`, { method: 'POST', body: form })).json()) as { id: string };
    const firstConn = await readSse(await fetch(`${gw.url}/v1/jobs/${id}/events`), (ev) => ev.length >= 1);
    const lastId = firstConn.at(-1)!.id!;
    expect(lastId).toMatch(/^\d+-\d+$/);
    const rest = await readSse(await fetch(`${gw.url}/v1/jobs/${id}/events`, { headers: { 'last-event-id': lastId } }), () => false);
    expect(rest.at(-1)).toMatchObject({ event: 'status', data: { status: 'completed' } });
    for (const e of rest) expect(e.id! > lastId || e.id!.length > lastId.length).toBe(true);
    await waitForStatus(gw.url, id, ['completed']);
  });
});
