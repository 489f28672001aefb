import { readFileSync } from 'node:fs';
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

/**
 * Where the gateway is: `--url`, else `PHOTOENHANCE_URL`, else the URL a running launcher (`npm start`) wrote to its
 * state file (<var>/launcher.json, only while its pid is alive: a stale file after a crash points nowhere), else
 * http://127.0.0.1:8080. So `PORT=9090 npm start` and a plain `photoenhance enhance` find each other.
 */
export function gatewayUrl(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return flag ?? (env.PHOTOENHANCE_URL || undefined) ?? launcherUrl(env) ?? DEFAULT_GATEWAY_URL;
}

/** The running launcher's gateway URL, or undefined without a live launcher. */
export function launcherUrl(env: NodeJS.ProcessEnv = process.env): string | undefined {
  let state: { pid?: unknown; url?: unknown };
  try {
    state = JSON.parse(readFileSync(join(varDir(env), 'launcher.json'), 'utf8')) as typeof state;
  } catch {
    return undefined;
  }
  if (typeof state.url !== 'string' || typeof state.pid !== 'number') return undefined;
  try {
    process.kill(state.pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return undefined;
  }
  return state.url;
}
