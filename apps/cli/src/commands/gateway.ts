import type { Command } from 'commander';
import { registerRole } from './role.js';

export function registerGateway(program: Command): void {
  registerRole(
    program,
    'gateway',
    'run only the HTTP gateway on this host (configured by environment; for multi-host deployments)',
    'Run the gateway alone, in the foreground: the HTTP API that stores uploads and queues jobs. Configured only by the environment ' +
      '(REDIS_URL or REDIS_SENTINELS/REDIS_CLUSTER_NODES, STORAGE_DIR or STORAGE_URL, HOST, PORT, and every gateway setting; see docs/multi-host.md). ' +
      'STORAGE_DIR defaults to <var>/storage as with `start`. Bad configuration exits 78 naming the setting; SIGTERM/SIGINT stop it cleanly (exit 0).',
  );
}
