/**
 * `npm run bench`: measurements, not tests. Prints a table and writes bench/results/<timestamp>.json (+ latest.json).
 * Sections compare side by side in one run (ratios), since these machines are noisy.
 * BENCH_QUICK=1 runs a smaller version of everything.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { benchBatch } from './batch.js';
import { benchChaos } from './chaos.js';
import { benchScale } from './scale.js';
import { benchEngines } from './engines.js';
import { benchIntake } from './intake.js';
import { benchQuality } from './quality.js';
import { benchSpine, type Row } from './spine.js';
import { benchThroughput } from './throughput.js';
import { benchRuntime } from './runtime.js';
import { REPO } from '../test/support/stack.js';
import { benchOvershoot } from '../packages/governor/bench/overshoot.js';

const quick = process.env.BENCH_QUICK === '1';
const only = process.argv.slice(2);
const rows: Row[] = [];
// chaos is a run of its own (`npm run chaos`): faults would disturb the other sections' figures.
const want = (name: string): boolean => (only.length === 0 && name !== 'chaos') || only.includes(name);

if (want('spine')) rows.push(...(await benchSpine({ jobs: quick ? 50 : 200 })));
// The gateway against a minimal gateway (multipart to a file + queue.add), side by side (bench/intake.ts).
if (want('intake')) rows.push(...(await benchIntake({ seconds: quick ? 3 : 8, connections: 64, quick })));
if (want('throughput')) rows.push(...(await benchThroughput({ jobs: quick ? 60 : 300, batchJobs: quick ? 100 : 500 })));
// Compiled runtime vs tsx: idle RSS of the gateway and worker, --help time (bench/runtime.ts).
if (want('runtime')) rows.push(...(await benchRuntime()));
if (want('governor')) {
  for (const { metric, value, unit, ...figures } of await benchOvershoot()) {
    const note = Object.entries(figures)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${k}=${String(v)}`)
      .join(', ');
    rows.push({ section: 'governor (limit 512 MiB)', metric, value, unit, note });
  }
}
if (want('engines')) rows.push(...(await benchEngines({ quick })));
if (want('batch')) rows.push(...(await benchBatch({ jobs: quick ? 60 : 200 })));
// Output quality against ground truth (bench/quality.ts); heavy (ESRGAN on CPU): runs only when named.
if (only.includes('quality')) rows.push(...(await benchQuality({ quick })));
if (want('chaos')) rows.push(...(await benchChaos({ quick })));
// Root only (network namespaces); `npm run bench -- scale` runs it alone.
if (want('scale')) rows.push(...(await benchScale({ quick })));

const fmt = (v: number): string => (Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(2) : v.toFixed(3));
console.log('');
console.log('| section | metric | value | unit | goal | note |');
console.log('|---|---|---|---|---|---|');
for (const r of rows) console.log(`| ${r.section} | ${r.metric} | ${fmt(r.value)} | ${r.unit} | ${r.goal ?? ''} | ${r.note ?? ''} |`);
const out = join(REPO, 'bench/results');
mkdirSync(out, { recursive: true });
const doc = { at: new Date().toISOString(), node: process.version, cpus: cpus().length, memBytes: totalmem(), quick, rows };
const stamp = doc.at.replace(/[:.]/g, '-');
writeFileSync(join(out, `${stamp}.json`), JSON.stringify(doc, null, 2));
writeFileSync(join(out, 'latest.json'), JSON.stringify(doc, null, 2));
console.log(`\nwrote bench/results/${stamp}.json`);
process.exit(0);
