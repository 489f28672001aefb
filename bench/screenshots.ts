/**
 * The dashboard screenshots in docs/screenshots/, from a real run with realistic data: a private Redis, the gateway and a
 * worker with the built-in `classic` and `portrait` engines, the six real photos of @vladmandic/face-api enhanced in
 * rounds (so the charts have a few minutes of history), a batch, a portrait job canceled while it ran. Chromium at
 * 1400×900 then photographs Queue, Hosts, Jobs, a job page and Batches.
 *
 *   node --import tsx bench/screenshots.ts            # writes docs/screenshots/*.png (about 3 minutes)
 *   SHOTS_DIR=/tmp/shots node --import tsx bench/screenshots.ts
 *
 * Every wait is bounded (the test helpers' polling); a failure stops the stack and exits 1.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { ensureDashboardBuilt } from '../apps/dashboard/scripts/build-if-stale.mjs';
import { launchChromium } from '../test/support/browser.js';
import { samplePhoto } from '../test/support/images.js';
import { REPO, startStack, submit, until, waitForStatus, type Stack } from '../test/support/stack.js';

const OUT = process.env.SHOTS_DIR ?? join(REPO, 'docs/screenshots');
const ROUNDS = Number(process.env.SHOTS_ROUNDS ?? 4);

async function photo(n: number, width: number): Promise<Buffer> {
  return sharp(samplePhoto(n)).resize({ width }).jpeg({ quality: 88 }).toBuffer();
}

async function main(): Promise<void> {
  mkdirSync(OUT, { recursive: true });
  await ensureDashboardBuilt({ quiet: true });
  let stack: Stack | undefined;
  const browser = await launchChromium();
  try {
    stack = await startStack({
      gateway: { maxEventLoopDelayMs: 0, dashboardSampleMs: 2000, knownEngines: ['classic', 'portrait'], defaultEngine: 'classic' },
      engines: [{ name: 'classic' }, { name: 'portrait' }],
    });
    const url = stack.gw.url;
    const idOf = async (res: Response): Promise<string> => {
      if (res.status !== 202) throw new Error(`submission answered ${res.status}: ${await res.text()}`);
      return ((await res.json()) as { id: string }).id;
    };

    // Rounds of the six photos at different sizes and options: real wait and run times for the charts.
    let lastPortrait = '';
    for (let round = 0; round < ROUNDS; round++) {
      const ids: string[] = [];
      for (let n = 1; n <= 6; n++) {
        const fields: Record<string, string> = { scale: String(1 + (n % 2)), format: n % 3 === 0 ? 'png' : 'jpeg' };
        if (n === 2) fields.denoise = 'false';
        ids.push(await idOf(await submit(url, await photo(n, 480 + 160 * ((n + round) % 4)), fields, `family-${round + 1}-${n}.jpg`)));
      }
      if (round % 2 === 0) {
        lastPortrait = await idOf(
          await submit(url, await photo(1 + round, 480), { engine: 'portrait', scale: '2' }, `portrait-${round + 1}.jpg`),
        );
        ids.push(lastPortrait);
      }
      for (const id of ids) await waitForStatus(url, id, ['completed', 'failed'], 180_000);
      console.log(`round ${round + 1}/${ROUNDS} done`);
    }

    // A batch of the six photos, and a portrait job canceled while it runs.
    const form = new FormData();
    form.append('scale', '2');
    for (let n = 1; n <= 6; n++) form.append('images', new Blob([await photo(n, 400)], { type: 'image/jpeg' }), `group-${n}.jpg`);
    const batch = (await (await fetch(`${url}/v1/batches`, { method: 'POST', body: form })).json()) as { id: string };
    const cancel = await idOf(await submit(url, await photo(6, 640), { engine: 'portrait', scale: '2' }, 'changed-my-mind.jpg'));
    await waitForStatus(url, cancel, ['active'], 180_000);
    await fetch(`${url}/v1/jobs/${cancel}`, { method: 'DELETE' });
    await until(
      'the batch to finish',
      async () => {
        const b = (await (await fetch(`${url}/v1/batches/${batch.id}`)).json()) as { status: string };
        return ['completed', 'partial', 'failed'].includes(b.status) ? b : undefined;
      },
      180_000,
      500,
    );
    // A few queued jobs behind a paused queue, so the counters are not all zero.
    await fetch(`${url}/dashboard/api/queues/classic/pause`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    for (let n = 1; n <= 3; n++) await idOf(await submit(url, await photo(n, 640), { scale: '2' }, `later-${n}.jpg`));

    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    page.setDefaultTimeout(30_000);
    await page.goto(`${url}/dashboard/#/queue`);
    await page.getByTestId('total-canceled').filter({ hasText: '1' }).waitFor();
    await page.getByTestId('total-queued').filter({ hasText: '3' }).waitFor();
    await page.screenshot({ path: join(OUT, 'dashboard-queue.png'), fullPage: true });
    await page.getByTestId('tab-hosts').click();
    await page.locator('[data-testid^="host-"][data-admission]').first().waitFor();
    await page.screenshot({ path: join(OUT, 'dashboard-hosts.png'), fullPage: true });
    await page.getByTestId('tab-jobs').click();
    await page.locator('tr[data-job-id]').first().waitFor();
    await page.screenshot({ path: join(OUT, 'dashboard-jobs.png') });
    await page.goto(`${url}/dashboard/#/jobs/${lastPortrait}`);
    await page.locator('[data-testid="job-page"][data-status="completed"]').waitFor();
    await page.getByTestId('thumb-output').waitFor();
    await page.waitForFunction(() =>
      [...(globalThis as unknown as { document: { images: Iterable<{ complete: boolean; naturalWidth: number }> } }).document.images].every(
        (i) => i.complete && i.naturalWidth > 0,
      ),
    );
    await page.screenshot({ path: join(OUT, 'dashboard-job.png'), fullPage: true });
    await page.goto(`${url}/dashboard/#/batches/${batch.id}`);
    await page.getByTestId('batch-items').waitFor();
    await page.screenshot({ path: join(OUT, 'dashboard-batches.png'), fullPage: true });
    console.log(`screenshots in ${OUT}`);
  } finally {
    await browser.close();
    await stack?.close();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
