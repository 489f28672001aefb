import { defineConfig } from 'vite';

// Served by the gateway under /dashboard/ (apps/gateway/src/dashboard); everything bundled, nothing from a CDN.
export default defineConfig({
  base: '/dashboard/',
  logLevel: 'warn',
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
  build: { outDir: 'dist', emptyOutDir: true, target: 'es2022', sourcemap: false, chunkSizeWarningLimit: 400 },
  server: { proxy: { '/dashboard/api': 'http://127.0.0.1:8080', '/v1': 'http://127.0.0.1:8080' } },
});
