import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import type { EngineJobError } from '../src/index.js';
import { fixture, governor, OPTIONS, req, waitFor } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'pe-oneshot-'));
const input = join(dir, 'in.png');
beforeAll(async () => {
  await sharp({ create: { width: 10, height: 8, channels: 3, background: '#c08040' } })
    .png()
    .toFile(input);
});

const cli = (...extra: string[]) => ({
  name: 'cli',
  kind: 'oneshot' as const,
  command: fixture('oneshot', '{input}', '{output}', '{scale}', ...extra),
});
const fail = (p: Promise<unknown>) =>
  p.then(
    () => {
      throw new Error('expected a rejection');
    },
    (e: EngineJobError) => e,
  );

describe('oneshot engines', () => {
  it('runs the command once per job with placeholders substituted and reads the output dimensions', async () => {
    const g = governor([cli()]);
    const r = await g.run('cli', req(input));
    expect(r.done.output).toMatchObject({ width: 20, height: 16, format: 'png' });
    expect(r.done.output.bytes).toBeGreaterThan(0);
    expect(r.done.applied).toEqual({ scale: 2, format: 'png' });
    const again = await g.run('cli', req(input, { options: { ...OPTIONS, scale: 4 } }));
    expect(again.done.output).toMatchObject({ width: 40, height: 32 });
    expect(again.engine.pid).not.toBe(r.engine.pid);
    expect(g.snapshot().engines[0]).toMatchObject({ kind: 'oneshot', capabilities: { options: ['scale'] } });
  });

  it('converts to the requested format and finds output by glob', async () => {
    const g = governor([
      { ...cli(), command: fixture('oneshot', '{input}', '{outputDir}/{id}_out.png', '{scale}'), outputPattern: '{outputDir}/{id}_*.png' },
    ]);
    const rq = req(input, { options: { ...OPTIONS, format: 'jpeg' } });
    rq.output = rq.output.replace(/\.png$/, '.jpg');
    const r = await g.run('cli', rq);
    expect(r.done.output.format).toBe('jpeg');
    expect((await sharp(rq.output).metadata()).format).toBe('jpeg');
  });

  it('non-zero exit → ENGINE_FAILED with words and stderr; no output → OUTPUT_MISSING', async () => {
    const g = governor([cli('--fail'), { name: 'quiet', kind: 'oneshot', command: fixture('no-ready', '--exit=0') }]);
    const e = await fail(g.run('cli', req(input)));
    expect(e.code).toBe('ENGINE_FAILED');
    expect(e.message).toContain('exited with code 4');
    expect(e.message).toContain(`cannot read ${input}`);
    expect((await fail(g.run('quiet', req(input)))).code).toBe('OUTPUT_MISSING');
  });

  it('memory limit, timeout and cancel', async () => {
    const g = governor(
      [
        cli('--grow'),
        { name: 'stuck', kind: 'oneshot', command: fixture('hang'), jobTimeoutMs: 300 },
        { name: 'slow', kind: 'oneshot', command: fixture('hang') },
      ],
      {
        enforcement: 'watchdog',
      },
    );
    const m = await fail(g.run('cli', req(input)));
    expect(m.code).toBe('ENGINE_MEMORY_LIMIT');
    expect(m.message).toContain('passed its memory limit 256 MiB');
    expect((await fail(g.run('stuck', req(input)))).code).toBe('ENGINE_TIMEOUT');
    const ac = new AbortController();
    const c = fail(g.run('slow', req(input), { signal: ac.signal }));
    await waitFor(() => g.snapshot().processes.some((p) => p.profile === 'slow'), 10_000, 'running');
    ac.abort();
    const ce = await c;
    expect(ce.code).toBe('JOB_CANCELED');
    expect(ce.retryable).toBe(false);
  });

  it('a missing executable → ENGINE_START_FAILED', async () => {
    const g = governor([{ name: 'gone', kind: 'oneshot', command: ['/nonexistent/upscaler', '{input}'] }], { enforcement: 'watchdog' });
    expect((await fail(g.run('gone', req(input)))).code).toBe('ENGINE_START_FAILED');
  });
});
