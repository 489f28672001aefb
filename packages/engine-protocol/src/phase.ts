/**
 * The life of an engine process as a small state machine (runEngine drives it):
 *
 *   starting --init ok--> idle --job--> busy --answered--> idle
 *   starting --shutdown--> exiting          (nothing to finish)
 *   idle --shutdown--> closing --close()--> exiting (exit 0)
 *   busy --shutdown--> busy (draining: new jobs refused) --answered--> closing
 *   any --stdin closed without shutdown, SIGTERM/SIGINT--> exiting (the running job answered `canceled`)
 *   any --init failed, uncaught exception--> exiting (exit 1)
 *
 * `exiting` is final: messages are ignored and a job answered late is dropped (its answer was already sent).
 */

export interface RunningJob {
  id: string;
  output: string;
  controller: AbortController;
  canceled: boolean;
}

export type Phase =
  | { is: 'starting' }
  | { is: 'idle' }
  | { is: 'busy'; job: RunningJob; draining: boolean }
  | { is: 'closing' }
  | { is: 'exiting' };

/** Why a `job` message cannot start now, or undefined when it can (only when idle). */
export function jobRefusal(phase: Phase): string | undefined {
  switch (phase.is) {
    case 'starting':
      return 'not ready yet; wait for "ready"';
    case 'idle':
      return undefined;
    case 'busy':
      return phase.draining ? 'shutting down' : `busy with job ${phase.job.id}; send one job at a time`;
    case 'closing':
    case 'exiting':
      return 'shutting down';
  }
}

/** The job running now, if any. */
export function runningJob(phase: Phase): RunningJob | undefined {
  return phase.is === 'busy' ? phase.job : undefined;
}
