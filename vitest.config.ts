import { defineConfig } from 'vitest/config';

/**
 * Three projects, so a part can run alone: `npm run test:unit` (each package's, engine's and app's own suite),
 * `vitest run --project e2e` (the cross-app suites in test/), `--project bench`. `npm test` runs all of them.
 */
export default defineConfig({
  test: {
    exclude: ['**/node_modules/**'],
    pool: 'forks',
    // 2-core machines: heavy end-to-end files must not all run at once.
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ['default'],
    projects: [
      {
        extends: true,
        test: { name: 'unit', include: ['packages/*/test/**/*.test.ts', 'engines/*/test/**/*.test.ts', 'apps/*/test/**/*.test.ts'] },
      },
      { extends: true, test: { name: 'e2e', include: ['test/**/*.test.ts'] } },
      { extends: true, test: { name: 'bench', include: ['bench/**/*.test.ts'] } },
    ],
  },
});
