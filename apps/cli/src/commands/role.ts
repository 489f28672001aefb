import type { Command } from 'commander';

export type Role = 'gateway' | 'worker';

/**
 * What `photoenhance gateway|worker` share: one role in this process, configured by the environment alone (the
 * variables the launcher passes its children, see launcher/launcher.ts), so a host runs only what it should.
 */
export function registerRole(program: Command, role: Role, summary: string, description: string): void {
  program
    .command(role)
    .summary(summary)
    .description(description)
    .action(async () => runRole(role));
}

async function runRole(role: Role): Promise<never> {
  const env = process.env;
  // Loaded here, not at the top: `photoenhance --help` must not pay for the launcher's imports.
  const { varDir } = await import('../paths.js');
  const { resolveStorageDir } = await import('../launcher/launcher.js');
  // The same storage default as `npm start` (<var>/storage), so the two roles on one box equal `npm start` with REDIS_URL.
  // Object storage (STORAGE_URL) needs no folder at all.
  if (!env.STORAGE_DIR && !env.STORAGE_URL) env.STORAGE_DIR = resolveStorageDir(env, varDir(env));
  // The app's own entry point owns the process from here: it loads its config (exit 78 naming the setting), listens or
  // fetches jobs, and exits on SIGTERM/SIGINT after a clean stop. The CLI adds no second layer of processes, so a
  // service manager's signals reach the app directly.
  if (role === 'gateway') await import('../../../gateway/src/main.js');
  else await import('../../../worker/src/main.js');
  return new Promise<never>(() => undefined);
}
