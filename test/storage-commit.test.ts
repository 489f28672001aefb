import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO, startStack, submit, until, waitForStatus, type Stack } from './support/stack.js';
import { smallPhoto } from './support/images.js';

/**
 * Only the worker publishes a result: engines write into a per-attempt staging folder, and the worker commits from
 * there (atomic rename / one PUT). An engine process that outlives its attempt and writes late can never overwrite a
 * published result. On a folder backend this failed before staging: the engine wrote the result key itself.
 */
const LATE = join(REPO, 'test/fixtures/engines/late-writer.mjs');

for (const storage of ['local', 's3'] as const) {
  describe(`a late write by an orphaned engine (${storage})`, () => {
    let stack: Stack;
    let dir: string;
    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), 'pe-late-'));
      stack = await startStack({
        storage,
        engines: [
          {
            name: 'late',
            kind: 'oneshot',
            command: [process.execPath, LATE, '{input}', '{output}'],
            env: { LATE_TRIGGER: join(dir, 'go'), LATE_DONE: join(dir, 'done') },
          },
        ],
        gateway: { knownEngines: ['late'], defaultEngine: 'late', maxEventLoopDelayMs: 0 },
      });
    });
    afterAll(async () => {
      if (dir) writeFileSync(join(dir, 'go'), 'stop waiting');
      await stack?.close();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it('cannot overwrite or publish anything', async () => {
      const r = await submit(stack.gw.url, await smallPhoto('jpeg', 64), { scale: '1', format: 'png' });
      expect(r.status).toBe(202);
      const { id } = (await r.json()) as { id: string };
      expect((await waitForStatus(stack.gw.url, id, ['completed', 'failed'])).status).toBe('completed');
      const before = Buffer.from(await (await fetch(`${stack.gw.url}/v1/jobs/${id}/result`)).arrayBuffer());
      expect(before.subarray(1, 4).toString()).toBe('PNG');
      // The orphan writes now, after the result was published.
      writeFileSync(join(dir, 'go'), 'go');
      const what = await until(
        'the orphan tried its late write',
        () => (existsSync(join(dir, 'done')) ? readFileSync(join(dir, 'done'), 'utf8') : undefined),
        30_000,
        20,
      );
      const after = Buffer.from(await (await fetch(`${stack.gw.url}/v1/jobs/${id}/result`)).arrayBuffer());
      expect(after.toString()).not.toBe('LATE WRITE');
      expect(after.equals(before)).toBe(true);
      // Its folder was removed when the attempt ended, so the write did not even land anywhere.
      expect(what).toBe('ENOENT');
    });
  });
}
