#!/usr/bin/env node
// The quality gates, run side by side (each is I/O- or single-core-bound), then one verdict per gate with the
// command that fixes what it found. Used by `npm run lint` and as the first step of `npm test`.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const bin = (name) => fileURLToPath(new URL(`../node_modules/.bin/${name}`, import.meta.url));

const gates = [
  {
    name: 'biome (lint + format)',
    cmd: bin('biome'),
    args: ['ci', '--error-on-warnings', '--colors=off', '--reporter=summary', '.'],
    fix: 'npm run lint:fix   (safe fixes + format); details of what remains: `npx biome check <file>`, then edit by hand or review `npx biome check --write --unsafe <file>`',
  },
  {
    name: 'knip (unused files, exports, dependencies)',
    cmd: bin('knip'),
    args: ['--no-progress'],
    fix: 'npx knip --fix --fix-type exports,types   (unused exports); unused files and dependencies: delete them / `npm uninstall -w <workspace> <dep>`',
  },
  {
    name: 'madge (import cycles)',
    cmd: bin('madge'),
    args: ['--circular', '--no-spinner', '--no-color', 'apps', 'packages', 'engines'],
    fix: 'no automatic fix: move what both files need into a third module (type-only and lazy import() edges are ignored; `npm run lint:cycles` shows the cycles again)',
  },
];

const only = process.argv.slice(2);
const chosen = only.length ? gates.filter((g) => only.some((o) => g.name.startsWith(o))) : gates;

const run = (gate) =>
  new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(gate.cmd, gate.args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('error', (err) => resolve({ gate, code: 1, out: String(err), ms: Date.now() - started }));
    child.on('close', (code) => resolve({ gate, code: code ?? 1, out, ms: Date.now() - started }));
  });

const results = await Promise.all(chosen.map(run));
let failed = 0;
for (const r of results) {
  if (r.code === 0) {
    console.log(`✔ ${r.gate.name} (${(r.ms / 1000).toFixed(1)} s)`);
    continue;
  }
  failed++;
  console.log(`\n✖ ${r.gate.name} (${(r.ms / 1000).toFixed(1)} s)\n${r.out.trimEnd()}\n→ fix: ${r.gate.fix}\n`);
}
if (failed) {
  console.log(`${failed} gate(s) failed; each one's fix command is printed above.`);
  process.exit(1);
}
