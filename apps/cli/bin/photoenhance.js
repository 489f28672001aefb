#!/usr/bin/env node
// Plain JS so it runs without a build. By default it runs the compiled CLI (apps/cli/dist, bundled by
// scripts/build-runtime.mjs, which rebuilds here first when a source is newer: a stat walk of a few ms otherwise), and the
// launcher and role commands then run the compiled gateway, worker and engines too: no TypeScript loader at run time.
// PHOTOENHANCE_DEV=1 runs the TypeScript sources through tsx instead, with no build step (the fast loop while editing).
let dev = process.env.PHOTOENHANCE_DEV === '1';
if (!dev) {
  const { ensureRuntimeBuilt } = await import('../../../scripts/build-runtime.mjs');
  try {
    // Says so on a terminal only: scripts and tests read this CLI's stderr.
    await ensureRuntimeBuilt({ quiet: !process.stderr.isTTY });
  } catch (err) {
    // A checkout the service user cannot write (or no esbuild) still runs, as it did before the build existed.
    process.stderr.write(
      `warning: cannot compile the runtime (node scripts/build-runtime.mjs: ${String(err?.message ?? err).split('\n')[0]}); running the TypeScript sources through tsx\n`,
    );
    dev = true;
  }
}
if (dev) {
  const { fileURLToPath } = await import('node:url');
  const { register } = await import('tsx/esm/api');
  // tsx against the repository's tsconfig, whatever the cwd.
  register({ tsconfig: fileURLToPath(new URL('../../../tsconfig.json', import.meta.url)) });
  await import('../src/main.ts');
} else {
  await import('../dist/main.js');
}
