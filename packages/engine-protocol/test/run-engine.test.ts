import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PROTOCOL_VERSION } from '@photoenhance/contracts';
import { EngineUnderTest, tsEngineArgv } from '../src/testing.js';

const here = fileURLToPath(new URL('.', import.meta.url));
const repoRoot = resolve(here, '../../..');
const fixture = join(here, 'fixtures/fixture-engine.ts');
const options = { scale: 2, format: 'png' } as const;

let dir: string;
const engines: EngineUnderTest[] = [];

function start(env: NodeJS.ProcessEnv = {}): EngineUnderTest {
  const e = new EngineUnderTest(tsEngineArgv(fixture), { cwd: repoRoot, env });
  engines.push(e);
  return e;
}

const job = (id: string, name: string) => ({
  id,
  input: join(dir, name),
  output: join(dir, `${id}.png`),
  options: { ...options } as never,
});

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'engine-protocol-'));
});
afterEach(async () => {
  for (const e of engines.splice(0)) {
    expect(e.badLines, 'stdout must carry protocol messages only').toEqual([]);
    await e.stop();
  }
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('runEngine over real stdio', () => {
  it('says ready first, with protocol, name, version, capabilities and info', async () => {
    const e = start();
    const ready = await e.ready();
    expect(e.messages[0]).toBe(ready);
    expect(ready).toMatchObject({
      protocol: PROTOCOL_VERSION,
      engine: 'fixture',
      version: '1.2.3',
      capabilities: { options: ['scale'], scales: [1, 2], formats: ['png'] },
      info: { pid: e.pid },
    });
    // console.log during init went to stderr, not stdout
    await e.waitForStderr('init: hello from console.log');
  });

  it('runs a job: progress, log, output file, done with applied and timings', async () => {
    const e = start();
    await e.ready();
    const { result, progress } = await e.run(job('j1', 'ok.jpg'));
    expect(result).toMatchObject({
      type: 'done',
      id: 'j1',
      output: { width: 20, height: 20, format: 'png', bytes: 14 },
      applied: { scale: 2 },
    });
    if (result.type !== 'done') throw new Error('unreachable');
    expect(result.timings).toMatchObject({ workMs: 1 });
    expect(typeof result.timings?.totalMs).toBe('number');
    expect(progress.map((p) => [p.progress, p.stage])).toEqual([
      [0.5, 'working'],
      [1, undefined],
    ]);
    expect(await e.take('log', { id: 'j1' })).toMatchObject({ level: 'info', message: expect.stringContaining('j1.png') });
    expect(readFileSync(join(dir, 'j1.png'), 'utf8')).toBe('fixture output');
    // stray writes in the handler went to stderr
    await e.waitForStderr('handling j1');
    await e.waitForStderr('raw stdout write from a library');
    // and the engine takes the next job
    expect((await e.run(job('j2', 'ok.jpg'))).result.type).toBe('done');
  });

  it('turns an EngineError into its code and a plain Error into ENGINE_FAILED, and removes partial output', async () => {
    const e = start();
    await e.ready();
    expect((await e.run(job('bad', 'unreadable.jpg'))).result).toEqual({
      type: 'error',
      id: 'bad',
      code: 'IMAGE_UNREADABLE',
      message: 'cannot decode this file',
      retryable: false,
    });
    writeFileSync(join(dir, 'boom.png'), 'partial');
    expect((await e.run(job('boom', 'crash.jpg'))).result).toEqual({
      type: 'error',
      id: 'boom',
      code: 'ENGINE_FAILED',
      message: 'boom',
      retryable: true,
    });
    expect(existsSync(join(dir, 'boom.png'))).toBe(false);
    expect((await e.run(job('after', 'ok.jpg'))).result.type).toBe('done');
  });

  it('cancels: aborts the handler signal and replies canceled; a second job while busy is refused', async () => {
    const e = start();
    await e.ready();
    e.send({ type: 'job', ...job('long', 'slow.jpg') });
    await e.take('progress', { id: 'long' });
    e.send({ type: 'job', ...job('second', 'ok.jpg') });
    const refused = await e.take('error', { id: 'second' });
    expect(refused).toMatchObject({
      code: 'ENGINE_PROTOCOL_ERROR',
      retryable: true,
      message: expect.stringContaining('busy with job long'),
    });
    e.send({ type: 'cancel', id: 'nobody' }); // unknown id: ignored
    e.send({ type: 'cancel', id: 'long' });
    expect((await e.outcome('long')).result).toEqual({ type: 'canceled', id: 'long' });
    expect(existsSync(join(dir, 'long.png'))).toBe(false);
    expect((await e.run(job('next', 'ok.jpg'))).result.type).toBe('done');
  });

  it('answers bad messages with ENGINE_PROTOCOL_ERROR and keeps running', async () => {
    const e = start();
    await e.ready();
    e.send('this is not json');
    expect(await e.take('error')).toMatchObject({
      code: 'ENGINE_PROTOCOL_ERROR',
      retryable: false,
      message: expect.stringContaining('not JSON'),
    });
    e.send('{"type":"reboot"}');
    expect(await e.take('error')).toMatchObject({
      code: 'ENGINE_PROTOCOL_ERROR',
      message: expect.stringContaining('unknown message type'),
    });
    e.send(
      JSON.stringify({ type: 'job', id: 'auto', input: join(dir, 'ok.jpg'), output: join(dir, 'auto.png'), options: { format: 'auto' } }),
    );
    expect(await e.take('error', { id: 'auto' })).toMatchObject({
      code: 'ENGINE_PROTOCOL_ERROR',
      message: expect.stringContaining('options.format'),
    });
    e.send(`{"type":"job","pad":"${'x'.repeat(1_100_000)}"}`);
    expect(await e.take('error')).toMatchObject({ code: 'ENGINE_PROTOCOL_ERROR', message: expect.stringContaining('dropped a line') });
    expect((await e.run(job('fine', 'ok.jpg'))).result.type).toBe('done');
  });

  it('exits 0 when stdin closes', async () => {
    const e = start();
    await e.ready();
    e.closeStdin();
    expect(await e.waitExit()).toEqual({ code: 0, signal: null });
  });

  it('stdin closing mid-job without a shutdown (the worker died) abandons the job and exits at once', async () => {
    const e = start();
    await e.ready();
    e.send({ type: 'job', ...job('orphaned', 'gate-orphan.jpg') });
    await e.take('progress', { id: 'orphaned' });
    const closedAt = Date.now();
    e.closeStdin();
    expect(await e.waitExit(3000)).toEqual({ code: 0, signal: null });
    expect(Date.now() - closedAt).toBeLessThan(1500);
    // The gate was never opened: the job did not finish, and no output was left behind.
    expect(e.messages.some((m) => m.type === 'done')).toBe(false);
    expect(existsSync(join(dir, 'orphaned.png'))).toBe(false);
  });

  it('on shutdown finishes the current job first, then exits 0; later jobs are refused', async () => {
    const e = start();
    await e.ready();
    const input = join(dir, 'gate-1.jpg');
    e.send({ type: 'job', ...job('gated', 'gate-1.jpg') });
    await e.take('progress', { id: 'gated' });
    e.send({ type: 'shutdown' });
    e.send({ type: 'job', ...job('late', 'ok.jpg') });
    expect(await e.take('error', { id: 'late' })).toMatchObject({ message: expect.stringContaining('shutting down') });
    writeFileSync(`${input}.go`, '');
    expect((await e.outcome('gated')).result.type).toBe('done');
    expect(await e.waitExit()).toEqual({ code: 0, signal: null });
  });

  it('exits promptly on SIGTERM, even in the middle of a job', async () => {
    const e = start();
    await e.ready();
    e.send({ type: 'job', ...job('stuck', 'slow.jpg') });
    await e.take('progress', { id: 'stuck' });
    e.child.kill('SIGTERM');
    expect(await e.waitExit(3000)).toEqual({ code: 0, signal: null });
    expect(e.messages.at(-1)).toEqual({ type: 'canceled', id: 'stuck' });
  });

  it('refuses a job sent before ready, and exits 0 if stdin closes during start-up', async () => {
    const gate = join(dir, 'init.gate');
    const e = start({ FIXTURE_INIT: 'slow', FIXTURE_INIT_GATE: gate });
    e.send({ type: 'job', ...job('early', 'ok.jpg') });
    expect(await e.take('error', { id: 'early' })).toMatchObject({ message: expect.stringContaining('not ready yet') });
    e.closeStdin();
    expect(await e.waitExit()).toEqual({ code: 0, signal: null });
    expect(e.messages.some((m) => m.type === 'ready')).toBe(false);
  });

  it('reports a failed init as an error without id and exits 1', async () => {
    const e = start({ FIXTURE_INIT: 'fail' });
    const err = await e.take('error');
    expect(err).toEqual({
      type: 'error',
      code: 'ENGINE_GPU_OOM',
      message: 'start-up failed: no GPU memory for the model',
      retryable: true,
    });
    expect(await e.waitExit()).toEqual({ code: 1, signal: null });
  });
});
