import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureDashboardBuilt } from '../apps/dashboard/scripts/build-if-stale.mjs';
import { startStack, until, type Stack } from './support/stack.js';
import { launchChromium } from './support/browser.js';
import { fakeNvidiaSmi, noopGpuEngine } from './support/fake-gpu.js';

/**
 * The Hosts view in real Chromium against a real worker (watchdog enforcement): the enforcement line in words, the
 * governor's diagnostic behind a disclosure; and, on a second worker whose GPUs come from the fake nvidia-smi, each
 * GPU with its memory, utilisation and the engines holding it, and the GPU_MEMORY_LOW hold naming the GPU.
 */

let stack: Stack;
let browser: Browser;

beforeAll(async () => {
  await ensureDashboardBuilt({ quiet: true });
  stack = await startStack({ gateway: { maxEventLoopDelayMs: 0 }, engines: [{ name: 'classic' }], workerEnv: { ENFORCEMENT: 'watchdog' } });
  browser = await launchChromium();
}, 180_000);
afterAll(async () => {
  await browser?.close();
  await stack?.close();
}, 60_000);

describe('Hosts view', () => {
  it('says how memory limits are enforced in words, with the diagnostic folded away', async () => {
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    page.setDefaultTimeout(20_000);
    await page.goto(`${stack.gw.url}/dashboard/#/hosts`);
    const dd = page.getByTestId('enforcement').first();
    await dd.waitFor();
    expect(await dd.innerText()).toMatch(/^Each engine's memory limit is enforced by the worker's RSS watchdog/);
    const details = dd.locator('details');
    expect(await details.evaluate((el) => (el as unknown as { open: boolean }).open)).toBe(false);
    // Folded: the raw diagnostic is not shown until asked for.
    expect(await dd.locator('details > span').isVisible()).toBe(false);
    await dd.locator('summary').click();
    expect(await dd.locator('details > span').isVisible()).toBe(true);
    expect(await dd.locator('details > span').innerText()).toContain('watchdog requested in configuration');
  }, 60_000);
});

describe('Hosts view on a GPU host (fake nvidia-smi)', () => {
  const smi = fakeNvidiaSmi();
  const HOST = 'dash-gpu-host';
  const UUID0 = 'GPU-eeeeeeee-0000-0000-0000-000000000000';
  const UUID1 = 'GPU-ffffffff-1111-1111-1111-111111111111';
  const table = (used1: number) => [
    { index: 0, uuid: UUID0, totalMiB: 24576, usedMiB: 20480, util: 97, name: 'NVIDIA Fake L4' },
    { index: 1, uuid: UUID1, totalMiB: 16384, usedMiB: used1, util: '[N/A]', name: 'NVIDIA Fake T4' },
  ];
  let gpuStack: Stack;

  beforeAll(async () => {
    smi.gpus(table(2048));
    gpuStack = await startStack({
      gateway: { maxEventLoopDelayMs: 0, dashboardSampleMs: 200, knownEngines: ['gpu'] },
      engines: [noopGpuEngine('2GiB')],
      workerEnv: { ENFORCEMENT: 'watchdog', HOST_ID: HOST, ADMISSION_CHECK_MS: '200', NVIDIA_SMI: smi.path, GPU_MARGIN: '512MiB' },
    });
  }, 180_000);
  afterAll(async () => {
    await gpuStack?.close();
    smi.remove();
  }, 60_000);

  it('shows each GPU (used/total, free, utilisation, engines holding it), the GPU of each process, and GPU_MEMORY_LOW naming the GPU', async () => {
    const proc = await until('a pinned gpu engine', async () => {
      const hosts = (
        (await (await fetch(`${gpuStack.gw.url}/v1/system`)).json()) as {
          hosts: Array<{ hostId: string; processes: Array<{ pid: number; state: string; gpu?: { index: number } }> }>;
        }
      ).hosts;
      return hosts.find((h) => h.hostId === HOST)?.processes.find((p) => p.state === 'idle' && p.gpu);
    });
    expect(proc.gpu?.index).toBe(1);
    smi.apps([{ pid: proc.pid, uuid: UUID1, usedMiB: 1536 }]);

    const page = await browser.newPage({ viewport: { width: 1300, height: 1000 } });
    page.setDefaultTimeout(20_000);
    await page.goto(`${gpuStack.gw.url}/dashboard/#/hosts`);
    const gpu0 = page.getByTestId(`gpu-${HOST}-0`);
    await gpu0.waitFor();
    expect(await gpu0.innerText()).toMatch(/NVIDIA Fake L4\s+20(\.0)? GiB \/ 24(\.0)? GiB\s+4(\.0)? GiB\s+97 %\s+none/);
    expect(await gpu0.locator('.bar').getAttribute('data-tone')).toBe('amber'); // 83 % used: amber from 75 %, red from 90 %
    const gpu1 = page.getByTestId(`gpu-${HOST}-1`);
    expect(await gpu1.innerText()).toContain('not reported'); // "[N/A]" utilisation
    const holders = page.getByTestId(`gpu-holders-${HOST}-1`);
    await page.waitForFunction((el) => /gpu \(pid \d+\) 1\.5 GiB/.test(el?.textContent ?? ''), await holders.elementHandle());
    expect(await holders.innerText()).toBe(`gpu (pid ${proc.pid}) 1.5 GiB`);
    expect(await page.getByTestId(`proc-gpu-gpu-${proc.pid}`).innerText()).toBe('GPU 1 · 1.5 GiB');

    // GPU 1 fills up: 512 MiB free, below the 2.5 GiB floor
    smi.gpus(table(15872));
    const reason = page.getByTestId(`admission-reason-${HOST}`);
    await reason.waitFor();
    expect(await reason.innerText()).toContain(
      `GPU_MEMORY_LOW — GPU 1 (NVIDIA Fake T4, ${UUID1}) has 512 MiB free of 16 GiB; engine gpu needs 2.5 GiB free`,
    );
    expect(await page.getByTestId(`admission-${HOST}`).innerText()).toBe('holding');
    expect(await page.getByTestId(`gpu-free-${HOST}-1`).innerText()).toMatch(/^512(\.0)? MiB$/);
    // the timeline keeps the transition with the GPU named
    const hold = page.getByTestId('timeline').locator('li', { hasText: 'GPU_MEMORY_LOW' }).first();
    await hold.waitFor();
    expect(await hold.innerText()).toContain(`GPU 1 (NVIDIA Fake T4, ${UUID1}) has 512 MiB free`);

    smi.gpus(table(2048));
    await page.waitForFunction((el) => el?.textContent === 'admitting', await page.getByTestId(`admission-${HOST}`).elementHandle());
    await page.close();
  }, 90_000);
});
