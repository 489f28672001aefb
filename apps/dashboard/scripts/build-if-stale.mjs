#!/usr/bin/env node
// Build the dashboard (vite build → dist/) when dist is missing or older than its sources; a no-op otherwise (~30 ms).
// The stamp is a hash of every source file, so a checkout, a branch switch or an edit all count, clocks do not.
//   node apps/dashboard/scripts/build-if-stale.mjs [--force]
// Also importable: `await ensureDashboardBuilt()` (the browser tests call it).
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const DIST = join(ROOT, 'dist');
const STAMP = join(DIST, '.source-hash');
const INPUTS = ['index.html', 'vite.config.ts', 'package.json', 'web'];

function files(p) {
  const full = join(ROOT, p);
  if (!existsSync(full)) return [];
  if (statSync(full).isDirectory())
    return readdirSync(full)
      .sort()
      .flatMap((f) => files(join(p, f)));
  return [p];
}

export function sourceHash() {
  const h = createHash('sha256');
  for (const f of INPUTS.flatMap(files))
    h.update(relative(ROOT, join(ROOT, f)))
      .update('\0')
      .update(readFileSync(join(ROOT, f)))
      .update('\0');
  return h.digest('hex');
}

export async function ensureDashboardBuilt({ force = false, quiet = false } = {}) {
  const hash = sourceHash();
  const fresh = existsSync(join(DIST, 'index.html')) && existsSync(STAMP) && readFileSync(STAMP, 'utf8').trim() === hash;
  if (fresh && !force) return { built: false, dir: DIST };
  const t0 = Date.now();
  const { build } = await import('vite');
  await build({ root: ROOT, configFile: join(ROOT, 'vite.config.ts'), logLevel: quiet ? 'silent' : 'warn' });
  writeFileSync(STAMP, `${hash}\n`);
  if (!quiet) process.stdout.write(`dashboard: built ${relative(process.cwd(), DIST) || DIST} in ${Date.now() - t0} ms\n`);
  return { built: true, dir: DIST };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  ensureDashboardBuilt({ force: process.argv.includes('--force') }).catch((err) => {
    process.stderr.write(`dashboard build failed: ${err?.stack ?? err}\n`);
    process.exit(1);
  });
}
