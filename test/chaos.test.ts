import { describe, expect, it } from 'vitest';
import { printChaos, runChaos, type FaultResult } from '../bench/chaos.js';

/**
 * The fault run of bench/chaos.ts (`npm run chaos` for the full counts), CI-sized: every fault once or twice, with a
 * shorter lock and heartbeat so a SIGSTOP past the lock fits the time. Nothing accepted may be lost or finished twice,
 * and a dead worker's job must run again within 15 s.
 */
describe('chaos: faults injected into the running system', () => {
  it('engine, worker, gateway (mid-upload) and Redis kills, and a frozen worker: 0 lost, 0 duplicated, quick recovery', async () => {
    const results: FaultResult[] = await runChaos({
      counts: { 'engine-kill': 2, 'worker-kill': 1, 'gateway-kill': 1, 'redis-kill': 1, 'worker-stop': 1 },
      jobsPerFault: 2,
      engineDelayMs: 800,
      workerEnv: { LOCK_DURATION_MS: '4000', STALLED_INTERVAL_MS: '1000', HEARTBEAT_MS: '1000' },
    });
    printChaos(results);
    for (const r of results) {
      expect(r.injected, r.fault).toBeGreaterThan(0);
      expect(r.accepted, r.fault).toBeGreaterThan(0);
      expect(r.lost, `${r.fault}: lost`).toBe(0);
      expect(r.duplicated, `${r.fault}: duplicated`).toBe(0);
      expect(r.orphans, `${r.fault}: engines that outlived their worker by 1.5 s`).toBe(0);
      expect(r.completed + r.failed, r.fault).toBe(r.accepted);
      if (r.fault === 'worker-kill' || r.fault === 'worker-stop')
        for (const ms of r.recoverMs) expect(ms, `${r.fault}: time to re-run`).toBeLessThan(15_000);
    }
    // Retryable faults end in completion, not failure.
    expect(results.reduce((a, r) => a + r.failed, 0)).toBe(0);
  }, 150_000);
});
