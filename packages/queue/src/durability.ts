import { keys } from './names.js';
import { isCluster, type RedisConnection } from './redis.js';

/**
 * Redis replicates asynchronously: a write the master acknowledged is lost if the master dies before a replica has it.
 * WAIT blocks until `n` replicas acknowledged every earlier write of this connection, so an answer sent after it
 * survives a failover. It must run on the connection that wrote, which holds for the gateway (one shared connection;
 * in a cluster, the connection to the node owning the project's hash slot).
 */
export interface ReplicaWaitSettings {
  /** Replicas that must acknowledge; undefined = 1 when the master has a replica connected, else none. 0 = never wait. */
  replicas: number | undefined;
  timeoutMs: number;
  /** How long the master's replica count is trusted in automatic mode. */
  infoCacheMs?: number;
}

export interface ReplicaWaitResult {
  /** Replicas required (0 = nothing to wait for). */
  needed: number;
  acked: number;
  ok: boolean;
}

export class ReplicaWait {
  private cached: { replicas: number; at: number } | undefined;

  constructor(
    private readonly redis: RedisConnection,
    private readonly s: ReplicaWaitSettings,
  ) {}

  /** Wait for the replicas to hold this connection's writes so far. Redis errors propagate (callers answer 503). */
  async confirm(): Promise<ReplicaWaitResult> {
    const needed = this.s.replicas ?? Math.min(1, await this.connectedReplicas());
    if (needed === 0) return { needed, acked: 0, ok: true };
    const acked = Number(await this.onOwner('WAIT', needed, this.s.timeoutMs));
    // A shortfall may mean the replica went away: look again next time.
    if (acked < needed) this.cached = undefined;
    return { needed, acked, ok: acked >= needed };
  }

  private async connectedReplicas(): Promise<number> {
    const now = Date.now();
    if (this.cached && now - this.cached.at < (this.s.infoCacheMs ?? 1000)) return this.cached.replicas;
    const info = String(await this.onOwner('INFO', 'replication'));
    const replicas = Number(/connected_slaves:(\d+)/.exec(info)?.[1] ?? 0);
    this.cached = { replicas, at: now };
    return replicas;
  }

  /**
   * WAIT and INFO carry no key; in a cluster they must reach the master owning the project's hash slot (and WAIT the
   * very connection that wrote): a pipeline that also touches a key of that slot is sent there as a whole.
   */
  private async onOwner(command: 'WAIT' | 'INFO', ...args: Array<string | number>): Promise<unknown> {
    if (!isCluster(this.redis)) return this.redis.call(command, ...args);
    const res = await this.redis
      .pipeline()
      .exists(keys.hostIndex)
      .call(command, ...args)
      .exec();
    const [err, value] = res?.[1] ?? [new Error(`no reply to ${command}`), undefined];
    if (err) throw err;
    return value;
  }
}
