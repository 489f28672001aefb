import type { Command } from 'commander';
import { registerRole } from './role.js';

export function registerWorker(program: Command): void {
  registerRole(
    program,
    'worker',
    'run only a worker on this host: takes jobs from Redis and runs the engines (configured by environment)',
    'Run one worker, in the foreground: it takes jobs from the queue while its governor admits them and runs the engine processes. ' +
      'Needs no gateway on this host, and no shared folder when STORAGE_URL names object storage. Configured only by the environment ' +
      '(REDIS_URL or REDIS_SENTINELS/REDIS_CLUSTER_NODES, STORAGE_DIR or STORAGE_URL, HOST_ID, WORKER_CONFIG, WORKER_ENGINES, ...; see docs/multi-host.md). ' +
      'Bad configuration exits 78 naming the setting; SIGTERM/SIGINT finish or hand back running jobs, stop the engines and exit 0.',
  );
}
