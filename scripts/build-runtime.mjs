#!/usr/bin/env node
// Compile the runtime (CLI, gateway, worker, built-in engines) from TypeScript to bundled JavaScript in <app>/dist/, so
// `npm start`, the role commands and the CLI run without a TypeScript loader (less memory, faster start).
// A no-op when every output is newer than every source (a stat walk, a few ms); `npm start`, `npm test`, `npm install`
// and the bin (apps/cli/bin/photoenhance.js) call it. Development runs the sources through tsx instead (PHOTOENHANCE_DEV=1).
//   node scripts/build-runtime.mjs [--force] [--quiet]
// Also importable: `await ensureRuntimeBuilt()`.
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));

/** What is compiled: every output sits at <dir>/<name>/dist/main.js, three levels under the root (see importMetaUrl). */
export const ENTRIES = ['apps/cli', 'apps/gateway', 'apps/worker', 'engines/classic', 'engines/esrgan', 'engines/portrait'];
export const outFile = (entry) => join(ROOT, entry, 'dist', 'main.js');
const STAMP = join(ROOT, 'apps', 'cli', 'dist', '.runtime-build.json');

/**
 * Source files whose change means a rebuild (workspace packages are bundled in), and the newest mtime among them: one
 * readdir per folder and one stat per file, since the bin runs this before every command.
 */
function scanInputs() {
  const files = [];
  let newest = 0;
  const add = (rel) => {
    const st = statSync(join(ROOT, rel), { throwIfNoEntry: false });
    if (!st) return;
    files.push(rel);
    if (st.mtimeMs > newest) newest = st.mtimeMs;
  };
  const walk = (rel) => {
    let entries;
    try {
      entries = readdirSync(join(ROOT, rel), { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
      if (e.isDirectory()) walk(`${rel}/${e.name}`);
      else if (/\.(ts|json|mjs)$/.test(e.name)) add(`${rel}/${e.name}`);
    }
  };
  const dirs = [
    'apps/cli',
    'apps/gateway',
    'apps/worker',
    ...readdirSync(join(ROOT, 'packages')).map((p) => `packages/${p}`),
    ...ENTRIES.filter((e) => e.startsWith('engines/')),
  ];
  for (const f of ['tsconfig.json', 'tsconfig.base.json', 'scripts/build-runtime.mjs']) add(f);
  for (const d of dirs) {
    add(`${d}/package.json`);
    walk(`${d}/src`);
  }
  return { files, newest };
}

/**
 * Fresh when the stamp names the same set of inputs and no input changed since the build began. Clocks, not hashes: a
 * checkout or an edit gives a file a new mtime, and the check must stay cheap because the bin runs it on every command.
 */
export function isRuntimeFresh() {
  let stamp;
  try {
    stamp = JSON.parse(readFileSync(STAMP, 'utf8'));
  } catch {
    return false;
  }
  if (!ENTRIES.every((e) => existsSync(outFile(e)))) return false;
  const { files, newest } = scanInputs();
  return stamp.inputs === files.join('\n') && newest <= stamp.startedAtMs;
}

/**
 * Source code refers to files next to it through import.meta.url (package.json versions, the dashboard's dist, model
 * folders). Bundled, import.meta.url is the output's URL; every output sits three levels under the root, so the source's
 * own URL is `../../../<its path>` from there, whichever bundle it ends up in.
 */
const sourceUrlPlugin = {
  name: 'source-import-meta-url',
  setup(build) {
    build.onLoad({ filter: /\.ts$/ }, async (args) => {
      if (args.path.includes(`${sep}node_modules${sep}`)) return undefined;
      let contents = readFileSync(args.path, 'utf8');
      if (contents.includes('import.meta.url')) {
        const rel = relative(ROOT, args.path).split(sep).join('/');
        contents = contents.replaceAll('import.meta.url', `new URL(${JSON.stringify(`../../../${rel}`)}, import.meta.url).href`);
      }
      return { contents, loader: 'ts' };
    });
  },
};

/**
 * npm packages stay external (loaded from node_modules at run time, native addons included); our workspace packages
 * (@photoenhance/*) are bundled. The CLI's role commands load the compiled gateway or worker, not a second copy of it.
 */
const externalsPlugin = {
  name: 'externals',
  setup(build) {
    build.onResolve({ filter: /\/(gateway|worker)\/src\/main\.js$/ }, (args) => {
      if (!args.importer.includes(`${sep}apps${sep}cli${sep}`)) return undefined;
      const app = /\/(gateway|worker)\/src\/main\.js$/.exec(args.path)[1];
      return { path: `../../${app}/dist/main.js`, external: true };
    });
    build.onResolve({ filter: /^[^./]/ }, (args) => {
      if (args.path.startsWith('@photoenhance/')) return undefined;
      return { path: args.path, external: true };
    });
  },
};

/** Chunks no build references any more are removed once this old (a running process may still load one lazily). */
const STALE_CHUNK_MS = 24 * 3600_000;

export async function buildRuntime({ quiet = false } = {}) {
  const t0 = Date.now();
  const { build } = await import('esbuild');
  // One build per entry, each split into chunks at the dynamic imports: a command or an optional part (object storage,
  // API docs) is loaded only when used, npm packages imported by that part included. Chunks sit next to main.js.
  const results = await Promise.all(
    ENTRIES.map((e) =>
      build({
        absWorkingDir: ROOT,
        entryPoints: { main: `${e}/src/main.ts` },
        outdir: `${e}/dist`,
        bundle: true,
        splitting: true,
        chunkNames: 'chunk-[hash]',
        format: 'esm',
        platform: 'node',
        target: 'node20',
        sourcemap: 'linked',
        // Code that asks "am I compiled?" (the launcher, the worker's engine commands) gets a constant.
        define: { 'process.env.PHOTOENHANCE_COMPILED': '"1"' },
        plugins: [externalsPlugin, sourceUrlPlugin],
        logLevel: 'warning',
        write: false,
      }),
    ),
  );
  // Each file is written atomically (temp + rename): parallel callers (test files starting the bin at once) may build
  // at the same moment, and a process must never load a half-written file. Chunk names are content hashes, so a
  // running process's chunks are never overwritten with other code.
  const written = new Set();
  for (const f of results.flatMap((r) => r.outputFiles)) {
    mkdirSync(dirname(f.path), { recursive: true });
    const tmp = `${f.path}.${process.pid}.tmp`;
    writeFileSync(tmp, f.contents);
    renameSync(tmp, f.path);
    written.add(f.path);
  }
  for (const e of ENTRIES) {
    const dir = join(ROOT, e, 'dist');
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      if (name.startsWith('chunk-') && !written.has(p) && Date.now() - statSync(p).mtimeMs > STALE_CHUNK_MS) rmSync(p, { force: true });
    }
  }
  const tmp = `${STAMP}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify({ startedAtMs: t0, inputs: scanInputs().files.join('\n') })}\n`);
  renameSync(tmp, STAMP);
  if (!quiet) process.stderr.write(`runtime: compiled ${ENTRIES.join(', ')} into <each>/dist in ${Date.now() - t0} ms\n`);
}

/** Build when stale; returns whether it built. */
export async function ensureRuntimeBuilt({ force = false, quiet = false } = {}) {
  if (!force && isRuntimeFresh()) return false;
  await buildRuntime({ quiet });
  return true;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  ensureRuntimeBuilt({ force: process.argv.includes('--force'), quiet: process.argv.includes('--quiet') }).catch((err) => {
    process.stderr.write(`runtime build failed: ${err?.stack ?? err}\n`);
    process.exit(1);
  });
}
