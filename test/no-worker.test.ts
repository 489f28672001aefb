import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import sharp from 'sharp';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startGateway, startStack, submit, until, type Stack } from './support/stack.js';
import { cleanEnv, REPO, runCli, startLauncher } from '../apps/cli/test/launch.js';

/**
 * A job for an engine no live worker offers used to be accepted and wait forever. Now: 503 NO_WORKER_FOR_ENGINE with
 * Retry-After (or 202 with a warning under ACCEPT_WITHOUT_WORKER=true), the CLI says so in words, and WORKER_CONFIG under
 * `npm start` adds to the built-in engine instead of replacing it. Real gateway, real worker, real CLI.
 */

let stack: Stack;
let work: string;
let photo: Buffer;
beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'pe-no-worker-'));
  photo = await sharp({ create: { width: 32, height: 24, channels: 3, background: '#884422' } })
    .jpeg()
    .toBuffer();
  stack = await startStack({
    gateway: { knownEngines: ['classic', 'parked'], acceptWithoutWorker: false, maxEventLoopDelayMs: 0 },
    engines: [{ name: 'classic' }],
  });
}, 120_000);
afterAll(async () => {
  await stack?.close();
  rmSync(work, { recursive: true, force: true });
}, 60_000);

describe('a submission for an engine no live host offers', () => {
  it('answers 503 NO_WORKER_FOR_ENGINE with Retry-After, naming what is offered', async () => {
    const res = await submit(stack.gw.url, photo, { engine: 'parked' });
    expect(res.status).toBe(503);
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    const body = (await res.json()) as Record<string, unknown>;
    expect(body).toMatchObject({ code: 'NO_WORKER_FOR_ENGINE', status: 503, engine: 'parked', offered: ['classic'] });
    expect(String(body.detail)).toContain('No live worker host offers the engine "parked"');
  });

  it('an offered engine is accepted without a warning; an unknown name is still 400', async () => {
    const ok = await submit(stack.gw.url, photo, { engine: 'classic' });
    expect(ok.status).toBe(202);
    expect(await ok.json()).not.toHaveProperty('warning');
    const typo = await submit(stack.gw.url, photo, { engine: 'clasic' });
    expect(typo.status).toBe(400);
    expect(((await typo.json()) as { code: string }).code).toBe('UNKNOWN_ENGINE');
  });

  it('with ACCEPT_WITHOUT_WORKER=true: 202 and a warning field', async () => {
    const lenient = await startGateway(
      stack.redis.url,
      { knownEngines: ['classic', 'parked'], acceptWithoutWorker: true },
      stack.gw.storageDir,
    );
    try {
      const res = await submit(lenient.url, photo, { engine: 'parked' });
      expect(res.status).toBe(202);
      const body = (await res.json()) as { id: string; warning?: string };
      expect(body.warning).toContain('No live worker host offers the engine "parked"');
      await fetch(`${lenient.url}/v1/jobs/${body.id}`, { method: 'DELETE' });
      const form = new FormData();
      form.append('engine', 'parked');
      form.append('images', new Blob([photo], { type: 'image/jpeg' }), 'one.jpg');
      const batch = await fetch(`${lenient.url}/v1/batches`, { method: 'POST', body: form });
      expect(batch.status).toBe(202);
      const accepted = (await batch.json()) as { id: string; warning?: string };
      expect(accepted.warning).toContain('No live worker host offers the engine "parked"');
      await fetch(`${lenient.url}/v1/batches/${accepted.id}`, { method: 'DELETE' });
      const refused = new FormData();
      refused.append('engine', 'parked');
      refused.append('images', new Blob([photo], { type: 'image/jpeg' }), 'one.jpg');
      const strict = await fetch(`${stack.gw.url}/v1/batches`, { method: 'POST', body: refused });
      expect(strict.status).toBe(503);
      expect(((await strict.json()) as { code: string }).code).toBe('NO_WORKER_FOR_ENGINE');
    } finally {
      await lenient.close();
    }
  });

  it('the CLI says so in words, at once, without retrying', async () => {
    const input = join(work, 'p.jpg');
    writeFileSync(input, photo);
    const run = await runCli(['enhance', input, '--engine', 'parked', '--url', stack.gw.url]);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('error NO_WORKER_FOR_ENGINE: No live worker host offers the engine "parked"');
    expect(run.stderr).toContain('hint: No live worker host offers this engine right now: start a worker that runs it');
    expect(run.stderr).not.toContain('retrying');
  });
});

describe('photoenhance batch for an engine no worker runs', () => {
  it('stops at once with the error and its hint instead of retrying forever', async () => {
    const dir = join(work, 'in');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(dir, { recursive: true });
    for (const n of ['a.jpg', 'b.jpg']) writeFileSync(join(dir, n), photo);
    const run = await runCli(['batch', dir, '--out', join(work, 'out'), '--engine', 'parked', '--url', stack.gw.url, '-q'], {
      timeoutMs: 30_000,
    });
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('error NO_WORKER_FOR_ENGINE: No live worker host offers the engine "parked"');
    expect(run.stderr).toContain('hint: No live worker host offers this engine right now');
  }, 60_000);
});

describe('WORKER_CONFIG under npm start', () => {
  it('adds its engines to the built-in classic engine', async () => {
    const launcher = await startLauncher({ env: { WORKER_CONFIG: join(REPO, 'engines/examples/imagemagick.json') } });
    try {
      const engines = (await (await fetch(`${launcher.url}/v1/engines`)).json()) as { engines: Array<{ name: string; hosts: unknown[] }> };
      const offered = engines.engines
        .filter((e) => e.hosts.length > 0)
        .map((e) => e.name)
        .sort();
      expect(offered).toEqual(['classic', 'imagemagick']);
      // The CLI of the same launcher reaches the gateway (state file) and gets a job through the built-in engine.
      const input = join(work, 'c.jpg');
      writeFileSync(input, photo);
      const run = await runCli(['enhance', input, '--engine', 'classic'], {
        env: cleanEnv({ PHOTOENHANCE_VAR_DIR: launcher.varDir }),
        timeoutMs: 120_000,
      });
      expect(run.code, run.stderr).toBe(0);
    } finally {
      await launcher.dispose();
    }
  }, 240_000);
});

describe('an engine whose only host went away', () => {
  it('stays known: 503 NO_WORKER_FOR_ENGINE with Retry-After (retry later), not 400 UNKNOWN_ENGINE (a typo)', async () => {
    // "classic" is known to this gateway only because a worker host offers it (not its default, not in KNOWN_ENGINES).
    const gw = await startGateway(
      stack.redis.url,
      { defaultEngine: 'parked', knownEngines: [], acceptWithoutWorker: false },
      stack.gw.storageDir,
    );
    try {
      expect((await submit(gw.url, photo, { engine: 'classic' })).status).toBe(202);
      // The host stops (its heartbeat is removed at once): no live host offers the engine any more.
      await stack.worker.stop();
      await until('the gateway to list classic without a host (its host list is cached for a second)', async () => {
        const { engines } = (await (await fetch(`${gw.url}/v1/engines`)).json()) as { engines: Array<{ name: string; hosts: unknown[] }> };
        return engines.find((e) => e.name === 'classic')?.hosts.length === 0;
      });
      const res = await submit(gw.url, photo, { engine: 'classic' });
      const body = (await res.json()) as Record<string, unknown>;
      expect({ status: res.status, code: body.code }).toEqual({ status: 503, code: 'NO_WORKER_FOR_ENGINE' });
      expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      const typo = await submit(gw.url, photo, { engine: 'clasic' });
      expect(((await typo.json()) as { code: string }).code).toBe('UNKNOWN_ENGINE');
    } finally {
      await gw.close();
    }
  });
});
