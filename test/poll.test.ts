import { describe, expect, it } from 'vitest';
import { poll, until } from './support/poll.js';

describe('the one polling helper (test/support/poll.ts)', () => {
  it('returns the first truthy value', async () => {
    let n = 0;
    expect(await until('n to reach 3', () => (++n >= 3 ? n : undefined), 5_000, 1)).toBe(3);
  });
  it('fails naming what it waited for and the last error, within its bound', async () => {
    const t0 = Date.now();
    await expect(
      poll(
        'the moon',
        () => {
          throw new Error('cloudy');
        },
        { timeoutMs: 50, everyMs: 5 },
      ),
    ).rejects.toThrow('timed out after 50 ms waiting for the moon (last error: cloudy)');
    expect(Date.now() - t0).toBeLessThan(5_000);
  });
  it("rethrows at once when told not to retry errors (the governor suite's waitFor)", async () => {
    let calls = 0;
    await expect(
      poll(
        'x',
        () => {
          calls++;
          throw new Error('boom');
        },
        { retryErrors: false },
      ),
    ).rejects.toThrow('boom');
    expect(calls).toBe(1);
  });
});
