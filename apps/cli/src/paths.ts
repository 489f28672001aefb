import { fileURLToPath } from 'node:url';
import { join, resolve } from 'node:path';

/** The repository root (apps/cli/src/ → ../../..), whatever the cwd. */
export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url)).replace(/\/$/, '');

/**
 * Where the launcher keeps Redis data, storage and launcher.json: `PHOTOENHANCE_VAR_DIR` (relative to the cwd) or
 * `<repo>/var`. Tests point it at a temp dir.
 */
export function varDir(env: NodeJS.ProcessEnv = process.env): string {
  const v = env.PHOTOENHANCE_VAR_DIR;
  return v ? resolve(v) : join(REPO_ROOT, 'var');
}

export const DEFAULT_GATEWAY_URL = 'http://127.0.0.1:8080';

export function gatewayUrl(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return flag ?? env.PHOTOENHANCE_URL ?? DEFAULT_GATEWAY_URL;
}
