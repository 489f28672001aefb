/** Shapes the gateway's dashboard API sends: the shared ones come from @photoenhance/contracts (types only). */

export type {
  EngineProcessState as EngineProcess,
  HostEvent,
  HostState,
  JobChange,
  JobDetail,
  JobPage,
  JobRow,
  JobStatus,
  Overview,
  QueueRow,
  Sample,
} from '@photoenhance/contracts/browser';
import type { JobChange, JobStatus } from '@photoenhance/contracts/browser';

export function changeToStatus(event: JobChange['event']): JobStatus | undefined {
  switch (event) {
    case 'waiting':
    case 'delayed':
      return 'queued';
    case 'active':
      return 'active';
    case 'completed':
      return 'completed';
    case 'failed':
      return 'failed';
    case 'removed':
      return 'canceled';
    default:
      return undefined;
  }
}
