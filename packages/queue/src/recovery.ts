import { readlinkSync } from 'node:fs';
import { hostname } from 'node:os';
import type { RedisConnection as Redis } from './redis.js';
import type { HostState } from '@photoenhance/contracts';
import { KEY_PREFIX, keys } from './names.js';

/**
 * Early recovery of a dead worker's jobs. BullMQ alone moves a dead worker's active job back only after its lock
 * expires and a stalled check has seen it twice; here every worker process registers itself (its BullMQ worker ids
 * per queue) beside its host heartbeat, and a live worker that sees an instance's heartbeat gone (or, on the same
 * machine, its process gone) deletes exactly that instance's job locks and runs BullMQ's own stalled check at once.
 * Deleting a lock never lets two workers finish a job: BullMQ's finish script requires the lock with the token the
 * job was fetched with, so a worker that was only frozen cannot commit after it thaws.
 */

/** Hash: instance id → JSON InstanceRecord. */
export const INSTANCES_KEY = `${KEY_PREFIX}:recovery:instances`;

export interface InstanceRecord {
  hostId: string;
  pid: number;
  startedAt: number;
  hostname: string;
  /** The pid namespace (`/proc/self/ns/pid` link): pids only compare within one. */
  pidNs: string | undefined;
  /** Queue name → BullMQ worker id (the prefix of every lock token the worker holds). */
  workers: Record<string, string>;
  /** Last heartbeat that refreshed this record, and how long it counts (the heartbeat's expiry). */
  seenAt: number;
  ttlMs: number;
}

/** Records of instances that died this long ago (and that no live worker could handle) are dropped. */
const FORGET_AFTER_MS = 3_600_000;

export const instanceId = (r: Pick<InstanceRecord, 'hostId' | 'pid' | 'startedAt'>): string => `${r.hostId}|${r.pid}|${r.startedAt}`;

export function ownPidNamespace(): string | undefined {
  try {
    return readlinkSync('/proc/self/ns/pid');
  } catch {
    return undefined;
  }
}

export function describeInstance(opts: {
  hostId: string;
  startedAt: number;
  workers: Record<string, string>;
  ttlMs: number;
}): InstanceRecord {
  return {
    hostId: opts.hostId,
    pid: process.pid,
    startedAt: opts.startedAt,
    hostname: hostname(),
    pidNs: ownPidNamespace(),
    workers: opts.workers,
    seenAt: Date.now(),
    ttlMs: opts.ttlMs,
  };
}

/** Write (or refresh) this instance's record; called with every heartbeat. */
export async function registerInstance(redis: Redis, rec: InstanceRecord): Promise<void> {
  await redis.hset(INSTANCES_KEY, instanceId(rec), JSON.stringify({ ...rec, seenAt: Date.now() }));
}

export async function forgetInstance(redis: Redis, rec: InstanceRecord): Promise<void> {
  await redis.hdel(INSTANCES_KEY, instanceId(rec));
}

function processGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

export interface DeadInstance {
  record: InstanceRecord;
  /** Why it counts as dead, for the log. */
  why: string;
}

/**
 * Registered instances other than `self` that are dead: their host heartbeat expired (or now belongs to another
 * process with the same host id) and their own record was not refreshed within the heartbeat's expiry, or they ran on
 * this machine (same host name and pid namespace) and their process
 * is gone. A frozen process (SIGSTOP) still exists, so only its heartbeat's expiry counts it dead.
 */
export async function deadInstances(redis: Redis, self: InstanceRecord): Promise<DeadInstance[]> {
  const all = await redis.hgetall(INSTANCES_KEY);
  const selfId = instanceId(self);
  const out: DeadInstance[] = [];
  const stale: string[] = [];
  for (const [id, raw] of Object.entries(all)) {
    if (id === selfId) continue;
    let rec: InstanceRecord;
    try {
      rec = JSON.parse(raw) as InstanceRecord;
    } catch {
      stale.push(id);
      continue;
    }
    if (rec.hostname === self.hostname && rec.pidNs !== undefined && rec.pidNs === self.pidNs && processGone(rec.pid)) {
      out.push({ record: rec, why: `its process ${rec.pid} on this machine is gone` });
      continue;
    }
    const beat = await redis.get(keys.host(rec.hostId));
    let state: Pick<HostState, 'pid' | 'startedAt'> | undefined;
    try {
      state = beat ? (JSON.parse(beat) as HostState) : undefined;
    } catch {
      state = undefined;
    }
    if (state && state.pid === rec.pid && state.startedAt === rec.startedAt) continue;
    // Its own record is still fresh: alive, even if another process publishes under the same host id (HOST_ID set twice).
    if (Date.now() - rec.seenAt < (rec.ttlMs ?? 0)) continue;
    if (Date.now() - rec.seenAt > FORGET_AFTER_MS) {
      stale.push(id);
      continue;
    }
    out.push({
      record: rec,
      why: state ? `host id ${rec.hostId} now belongs to pid ${state.pid}` : `its heartbeat (host ${rec.hostId}) expired`,
    });
  }
  if (stale.length) await redis.hdel(INSTANCES_KEY, ...stale);
  return out;
}

/** The keys of one BullMQ queue that the recovery scripts touch (from the Worker: `worker.keys`, `worker.toKey('')`). */
export interface QueueKeys {
  active: string;
  stalled: string;
  stalledCheck: string;
  /** `queue.toKey('')`: a job's hash is `<jobPrefix><id>`, its lock `<jobPrefix><id>:lock`. */
  jobPrefix: string;
}

// Delete the locks held by the given BullMQ worker ids (token = "<workerId>:<n>") on active jobs, mark those jobs as
// stalling candidates and clear the stalled-check throttle, so BullMQ's own moveStalledJobsToWait moves them now.
const RELEASE_LUA = `
local released = {}
local active = redis.call('LRANGE', KEYS[1], 0, -1)
for _, id in ipairs(active) do
  local lockKey = ARGV[1] .. id .. ':lock'
  local owner = redis.call('GET', lockKey)
  if owner then
    for i = 2, #ARGV do
      local w = ARGV[i] .. ':'
      if string.sub(owner, 1, #w) == w then
        redis.call('DEL', lockKey)
        redis.call('SADD', KEYS[2], id)
        table.insert(released, id)
        break
      end
    end
  end
end
if #released > 0 then redis.call('DEL', KEYS[3]) end
return released`;

/** Release the active jobs of dead BullMQ workers (ids) on one queue; returns the job ids released. */
export async function releaseLocks(redis: Redis, q: QueueKeys, workerIds: string[]): Promise<string[]> {
  if (workerIds.length === 0) return [];
  return (await redis.eval(RELEASE_LUA, 3, q.active, q.stalled, q.stalledCheck, q.jobPrefix, ...workerIds)) as string[];
}

// Keep (or take back) the lock of a job this worker still runs: ours → extended; missing while the job is still
// active (its lock expired while Redis was away, and no stalled check has moved it) → ours again; anyone else's, or
// the job left active → not ours any more.
const RECLAIM_LUA = `
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] or (not owner and redis.call('LPOS', KEYS[2], ARGV[3])) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  redis.call('SREM', KEYS[3], ARGV[3])
  return 1
end
return 0`;

export async function reclaimLock(redis: Redis, q: QueueKeys, jobId: string, token: string, lockMs: number): Promise<boolean> {
  const r = await redis.eval(RECLAIM_LUA, 3, `${q.jobPrefix}${jobId}:lock`, q.active, q.stalled, token, String(lockMs), jobId);
  return r === 1;
}
