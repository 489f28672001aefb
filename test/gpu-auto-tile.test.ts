import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HostState, JobView } from '@photoenhance/contracts';
import { chooseBgTile } from '@photoenhance/governor';
import { fakeNvidiaSmi, startGpuWorker } from './support/fake-gpu.js';
import { startTestRedis, type TestRedis } from './support/redis.js';
import { REPO, startGateway, submit, until, waitForStatus, type RunningGateway, type RunningWorker } from './support/stack.js';

/**
 * The automatic background tile through the whole stack: a job that leaves bgTile unset gets a tile sized by the real
 * worker for its GPU's free memory (a fake nvidia-smi whose output the test writes), 400 on a host that sees no GPU;
 * an explicit bgTile is passed on as sent. The engine reports the options it was handed as `applied`.
 */
let redis: TestRedis;
let gw: RunningGateway;
let gpuWorker: RunningWorker;
let plainWorker: RunningWorker;
const smi = fakeNvidiaSmi();
let large: Buffer;
const GiB = 2 ** 30;
const UUID0 = 'GPU-cccccccc-0000-0000-0000-000000000000';
const ECHO = join(REPO, 'test/fixtures/engines/echo-options.mjs');

/** One 16 GiB GPU with this much free. */
function freeMiB(free: number): void {
  smi.gpus([{ index: 0, uuid: UUID0, totalMiB: 16384, usedMiB: 16384 - free }]);
}

const profile = (engine: string) => ({
  name: engine,
  command: [process.execPath, ECHO],
  gpus: 'all',
  expectedGpuMemoryBytes: '256MiB',
  expectedMemoryBytes: '64MiB',
});

/** Wait until the worker's GPU sample (what the tile is sized from, published with its host state) shows this figure. */
async function sampled(freeBytes: number): Promise<void> {
  await until(`GPU 0 sampled with ${freeBytes} bytes free`, async () => {
    const hosts = ((await (await fetch(`${gw.url}/v1/system`)).json()) as { hosts: HostState[] }).hosts;
    return hosts.find((h) => h.hostId === 'tile-gpu')?.gpu?.gpus[0]?.freeBytes === freeBytes;
  });
}

async function run(engine: string, fields: Record<string, string> = {}, photo = large): Promise<JobView> {
  const res = await submit(gw.url, photo, { engine, scale: '1', format: 'png', ...fields });
  expect(res.status).toBe(202);
  const { id } = (await res.json()) as { id: string };
  const view = (await waitForStatus(gw.url, id, ['completed', 'failed'])) as unknown as JobView;
  expect(view.status).toBe('completed');
  return view;
}

beforeAll(async () => {
  freeMiB(16384);
  // 4000 x 3000: 12 MP, untiled about 24.5 GiB of GPU memory (BRIEF section 4), so every GPU below tiles it.
  large = await sharp({ create: { width: 4000, height: 3000, channels: 3, background: { r: 90, g: 120, b: 150 } } })
    .jpeg({ quality: 80 })
    .toBuffer();
  redis = await startTestRedis();
  gw = await startGateway(redis.url, { knownEngines: ['tiled', 'plain'], jobBackoffMs: 50 });
  const common = { redisUrl: redis.url, storageDir: gw.storageDir };
  [gpuWorker, plainWorker] = await Promise.all([
    startGpuWorker({ ...common, hostId: 'tile-gpu', nvidiaSmi: smi.path, engines: [profile('tiled')], env: { GPU_MARGIN: '128MiB' } }),
    // No GPU visible: nvidia-smi is not there.
    startGpuWorker({ ...common, hostId: 'tile-nogpu', nvidiaSmi: join(smi.dir, 'no-such-nvidia-smi'), engines: [profile('plain')] }),
  ]);
});

afterAll(async () => {
  await Promise.all([gpuWorker?.stop(), plainWorker?.stop()]);
  await gw?.close();
  await redis?.close();
  smi.remove();
});

describe('automatic background tile (bgTile unset)', () => {
  let plenty = 0;

  it('a large photo on a GPU with plenty free gets a large tile, recorded in the result', async () => {
    await sampled(16 * GiB);
    const view = await run('tiled');
    expect(view.options).not.toHaveProperty('bgTile');
    plenty = view.result!.applied.bgTile as number;
    expect(plenty).toBe(chooseBgTile(16 * GiB, 4000, 3000)!.tile);
    expect(plenty).toBe(1024);
    expect(view.result!.meta).toMatchObject({ bgTileChoice: { bgTile: plenty, basis: 'gpu', gpu: 0, freeBytes: 16 * GiB } });
  });

  it('the same photo with little free GPU memory gets a smaller even tile ("auto" said explicitly)', async () => {
    freeMiB(1024);
    await sampled(GiB);
    const view = await run('tiled', { bgTile: 'auto' });
    const tile = view.result!.applied.bgTile as number;
    expect(tile).toBe(chooseBgTile(GiB, 4000, 3000)!.tile);
    expect(tile).toBeLessThan(plenty);
    expect(tile % 2).toBe(0);
    expect(tile).toBeGreaterThanOrEqual(64);
    const choice = (view.result!.meta as { bgTileChoice: { expectedBytes: number; budgetBytes: number } }).bgTileChoice;
    expect(choice).toMatchObject({ bgTile: tile, basis: 'gpu', freeBytes: GiB });
    expect(choice.expectedBytes).toBeLessThanOrEqual(choice.budgetBytes);
    expect(choice.budgetBytes).toBeLessThan(GiB); // headroom kept free
  });

  it('a small photo that fits whole is not tiled (0)', async () => {
    const small = await sharp({ create: { width: 320, height: 240, channels: 3, background: { r: 1, g: 2, b: 3 } } })
      .jpeg()
      .toBuffer();
    const view = await run('tiled', {}, small);
    expect(view.result!.applied.bgTile).toBe(0);
  });

  it('an explicit bgTile is passed on as sent, whatever the GPU has free', async () => {
    const view = await run('tiled', { bgTile: '1000' });
    expect(view.options.bgTile).toBe(1000);
    expect(view.result!.applied.bgTile).toBe(1000);
    expect(view.result!.meta ?? {}).not.toHaveProperty('bgTileChoice');
  });

  it('a host with no GPU visible uses 400', async () => {
    const view = await run('plain');
    expect(view.result!.applied.bgTile).toBe(400);
    expect(view.result!.meta).toMatchObject({ bgTileChoice: { bgTile: 400, basis: 'no-gpu' } });
  });
});
