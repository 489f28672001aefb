/**
 * The crop sheet: the same small region from every candidate side by side (truth first), enlarged with nearest
 * neighbour so a person sees the pixels each engine made, one row per (photo, scale, region), labelled.
 */
import sharp, { type OverlayOptions } from 'sharp';
import type { Box, Rgb } from './metrics.js';

export interface SheetRow {
  label: string;
  /** Region in truth/output coordinates. */
  region: Box;
  /** Column label → full-size image (same size as the truth). */
  images: Array<{ label: string; img: Rgb }>;
}

const TILE = 224;
const LABEL_H = 22;
const ROW_LABEL_W = 150;

const escapeXml = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function text(label: string, width: number, height: number, size = 13): Buffer {
  return Buffer.from(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}"><rect width="100%" height="100%" fill="#202020"/>` +
      `<text x="4" y="${height - 6}" font-family="DejaVu Sans, sans-serif" font-size="${size}" fill="#f0f0f0">${escapeXml(label)}</text></svg>`,
  );
}

async function tile(img: Rgb, r: Box): Promise<Buffer> {
  return sharp(Buffer.from(img.data.buffer, img.data.byteOffset, img.data.length), {
    raw: { width: img.width, height: img.height, channels: 3 },
  })
    .extract({ left: r.left, top: r.top, width: r.width, height: r.height })
    .resize(TILE, Math.round((TILE * r.height) / r.width), { kernel: 'nearest' })
    .png()
    .toBuffer();
}

/** Render the rows into one PNG. All rows must have the same columns. */
export async function cropSheet(rows: SheetRow[], file: string): Promise<void> {
  const columns = rows[0]?.images.map((i) => i.label) ?? [];
  const rowH = (r: SheetRow): number => Math.round((TILE * r.region.height) / r.region.width);
  const width = ROW_LABEL_W + columns.length * (TILE + 2);
  const height = LABEL_H + rows.reduce((s, r) => s + rowH(r) + 2, 0);
  const parts: OverlayOptions[] = columns.map((c, i) => ({ input: text(c, TILE, LABEL_H), left: ROW_LABEL_W + i * (TILE + 2), top: 0 }));
  let top = LABEL_H;
  for (const r of rows) {
    const h = rowH(r);
    parts.push({ input: text(r.label, ROW_LABEL_W - 2, Math.min(h, 40), 12), left: 0, top });
    for (const [i, im] of r.images.entries()) parts.push({ input: await tile(im.img, r.region), left: ROW_LABEL_W + i * (TILE + 2), top });
    top += h + 2;
  }
  await sharp({ create: { width, height, channels: 3, background: '#000000' } })
    .composite(parts)
    .png({ compressionLevel: 9 })
    .toFile(file);
}
