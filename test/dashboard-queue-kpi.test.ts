import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureDashboardBuilt } from '../apps/dashboard/scripts/build-if-stale.mjs';
import { startStack, submit, until, waitForStatus, type Stack } from './support/stack.js';
import { smallPhoto } from './support/images.js';
import { launchChromium } from './support/browser.js';

/**
 * The Queue view at 800 px and at 1400 px: every KPI value on one line, none cut off; the charts' axis labels inside their
 * canvas (no ink on its outer edges); p50 and p95 told apart. Real Chromium.
 */

let stack: Stack;
let browser: Browser;

beforeAll(async () => {
  await ensureDashboardBuilt({ quiet: true });
  stack = await startStack({ gateway: { maxEventLoopDelayMs: 0, dashboardSampleMs: 200 }, engines: [{ name: 'classic' }] });
  // Finished jobs, so the p50/p95 cards hold real figures (the longest values on the page).
  for (let i = 0; i < 3; i++) {
    const res = await submit(stack.gw.url, await smallPhoto('jpeg', 200));
    await waitForStatus(stack.gw.url, ((await res.json()) as { id: string }).id, ['completed']);
  }
  browser = await launchChromium();
}, 180_000);
afterAll(async () => {
  await browser?.close();
  await stack?.close();
}, 60_000);

describe('Queue view KPIs', () => {
  for (const width of [800, 1400]) {
    it(`do not wrap or overflow at ${width} px`, async () => {
      const page = await browser.newPage({ viewport: { width, height: 900 } });
      page.setDefaultTimeout(20_000);
      await page.goto(`${stack.gw.url}/dashboard/#/queue`);
      await page.getByTestId('total-completed').filter({ hasText: '3' }).waitFor();
      await page.locator('.card-value', { hasText: '/' }).first().waitFor();
      const cards = await page.locator('.card-value').evaluateAll((els) =>
        els.map((e) => {
          const el = e as unknown as {
            innerText: string;
            scrollWidth: number;
            clientWidth: number;
            getClientRects(): ArrayLike<unknown>;
            getBoundingClientRect(): { height: number };
          };
          const style = (
            globalThis as unknown as { getComputedStyle(x: unknown): { lineHeight: string; fontSize: string } }
          ).getComputedStyle(e);
          const line = Number.parseFloat(style.lineHeight) || Number.parseFloat(style.fontSize) * 1.2;
          return {
            text: el.innerText,
            lines: Math.round(el.getBoundingClientRect().height / line),
            overflow: el.scrollWidth > el.clientWidth + 1,
          };
        }),
      );
      expect(cards.length).toBeGreaterThanOrEqual(7);
      for (const c of cards) {
        expect(c.lines, `"${c.text}" at ${width} px`).toBe(1);
        expect(c.overflow, `"${c.text}" cut off at ${width} px`).toBe(false);
      }

      // Axis labels are drawn on the canvas, so a clipped one leaves ink on its edge: the left column (y labels), the
      // bottom row and, below the plot area, the right column (the last time label). Charts with data only.
      await page.locator('[data-testid="chart-times"] canvas').waitFor();
      for (const id of ['chart-depth', 'chart-rate', 'chart-times']) {
        const clean = { left: 0, bottom: 0, rightBelowPlot: 0, overInside: true };
        const measure = () =>
          page.getByTestId(id).evaluate((el) => {
            type Ctx = { getImageData(x: number, y: number, w: number, h: number): { data: ArrayLike<number> } };
            type Canvas = {
              width: number;
              height: number;
              getContext(k: '2d'): Ctx;
              getBoundingClientRect(): { top: number; bottom: number; left: number; right: number };
            };
            const root = el as unknown as { querySelector(q: string): unknown };
            const canvas = root.querySelector('canvas') as Canvas;
            const over = (root.querySelector('.u-over') as Canvas).getBoundingClientRect();
            const box = canvas.getBoundingClientRect();
            const scale = canvas.height / (box.bottom - box.top);
            const ctx = canvas.getContext('2d');
            const ink = (x: number, y: number, w: number, h: number): number => {
              if (w <= 0 || h <= 0) return 0;
              const d = ctx.getImageData(x, y, w, h).data;
              let n = 0;
              for (let i = 3; i < d.length; i += 4) if (d[i]! > 40) n++;
              return n;
            };
            const plotBottom = Math.ceil((over.bottom - box.top) * scale) + 1;
            return {
              left: ink(0, 0, 1, canvas.height),
              bottom: ink(0, canvas.height - 1, canvas.width, 1),
              rightBelowPlot: ink(canvas.width - 1, plotBottom, 1, canvas.height - plotBottom),
              overInside: over.left >= box.left && over.right <= box.right && over.bottom <= box.bottom,
            };
          });
        // A chart redraws as data arrives (and its axes settle over a few layout passes): the labels must end up
        // inside the canvas, and stay there; a clipped label never clears.
        let edges: Awaited<ReturnType<typeof measure>> | undefined;
        await until(
          `${id} at ${width} px to draw every label inside its canvas`,
          async () => {
            edges = await measure();
            return JSON.stringify(edges) === JSON.stringify(clean) ? edges : undefined;
          },
          5_000,
          100,
        ).catch(() => undefined);
        expect(edges, `${id} at ${width} px`).toEqual(clean);
      }
      // p50 solid and p95 dashed, in the chart and in its legend.
      const markers = await page
        .getByTestId('chart-times')
        .locator('.u-legend .u-series')
        .evaluateAll((rows) =>
          rows.map((r) => {
            const row = r as unknown as { innerText: string; querySelector(q: string): unknown };
            const g = globalThis as unknown as { getComputedStyle(x: unknown): { borderStyle: string } };
            const m = row.querySelector('.u-marker');
            return { label: row.innerText.split('\n')[0]!.trim(), border: m ? g.getComputedStyle(m).borderStyle : '' };
          }),
        );
      const style = (label: string): string | undefined => markers.find((m) => m.label.startsWith(label))?.border;
      expect(style('wait p50')).toBeDefined();
      expect(style('wait p50')).not.toBe(style('wait p95'));
      expect(style('run p50')).not.toBe(style('run p95'));
      await page.close();
    }, 60_000);
  }
});
