#!/usr/bin/env node
// Plain JS so it runs without a build. By default it runs the compiled CLI (apps/cli/dist, bundled by
// scripts/build-runtime.mjs, which rebuilds here first when a source is newer: a stat walk of a few ms otherwise), and the
// launcher and role commands then run the compiled gateway, worker and engines too: no TypeScript loader at run time.
// PHOTOENHANCE_DEV=1 runs the TypeScript sources through tsx instead, with no build step (the fast loop while editing).
if (process.env.PHOTOENHANCE_DEV === '1') {
  const { fileURLToPath } = await import('node:url');
  const { register } = await import('tsx/esm/api');
  // tsx against the repository's tsconfig, whatever the cwd.
  register({ tsconfig: fileURLToPath(new URL('../../../tsconfig.json', import.meta.url)) });
  await import('../src/main.ts');
} else {
  const { ensureRuntimeBuilt } = await import('../../../scripts/build-runtime.mjs');
  try {
    // Says so on a terminal only: scripts and tests read this CLI's stderr.
    await ensureRuntimeBuilt({ quiet: !process.stderr.isTTY });
  } catch (err) {
    process.stderr.write(`error: cannot compile the runtime (node scripts/build-runtime.mjs): ${err?.message ?? err}\nhint: PHOTOENHANCE_DEV=1 runs the TypeScript sources through tsx without a build\n`);
    process.exit(1);
  }
  await import('../dist/main.js');
}
