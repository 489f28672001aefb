import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';

/** A connection to the project's Redis, whichever way it is deployed. Both speak the same commands. */
export type RedisConnection = Redis | Cluster;

export interface HostPort {
  host: string;
  port: number;
}

/**
 * Where Redis is, parsed once from the settings (REDIS_URL, or REDIS_SENTINELS + REDIS_SENTINEL_MASTER, or
 * REDIS_CLUSTER_NODES) and handed to every component, so they all connect the same way through createRedis().
 */
export type RedisTarget =
  | { mode: 'single'; url: string; password?: string }
  | { mode: 'sentinel'; sentinels: HostPort[]; masterName: string; username?: string; password?: string; sentinelPassword?: string }
  | { mode: 'cluster'; nodes: HostPort[]; username?: string; password?: string };

/** The settings as each app's config holds them (config keys; env names in REDIS_ENV). */
export interface RedisSettings {
  redisUrl?: string | undefined;
  redisPassword?: string | undefined;
  redisSentinels?: readonly string[] | undefined;
  redisSentinelMaster?: string | undefined;
  redisSentinelPassword?: string | undefined;
  redisClusterNodes?: readonly string[] | undefined;
}

export const REDIS_ENV = {
  redisUrl: 'REDIS_URL',
  redisPassword: 'REDIS_PASSWORD',
  redisSentinels: 'REDIS_SENTINELS',
  redisSentinelMaster: 'REDIS_SENTINEL_MASTER',
  redisSentinelPassword: 'REDIS_SENTINEL_PASSWORD',
  redisClusterNodes: 'REDIS_CLUSTER_NODES',
} as const satisfies Record<keyof RedisSettings, string>;

/** Every env variable that says where Redis is (the launcher passes these through to the apps it starts). */
export const REDIS_ENV_NAMES: readonly string[] = Object.values(REDIS_ENV);

export class RedisConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join('; '));
    this.name = 'RedisConfigError';
  }
}

function hostPorts(list: readonly string[], setting: string, problems: string[]): HostPort[] {
  const out: HostPort[] = [];
  for (const item of list) {
    // host:port, or [v6]:port
    const m = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(item.trim());
    const port = m ? Number(m[2]) : NaN;
    if (!m || port < 1 || port > 65535) {
      problems.push(
        `setting ${setting} must be a comma list of host:port (e.g. 10.0.0.1:26379,10.0.0.2:26379); received ${JSON.stringify(item)}`,
      );
      continue;
    }
    out.push({ host: m[1]!, port });
  }
  if (list.length === 0) problems.push(`setting ${setting} is empty: list at least one host:port`);
  return out;
}

/**
 * One place decides how to reach Redis. Sentinel and Cluster exclude each other; REDIS_URL is for one node only
 * (with Sentinel or Cluster, credentials come from REDIS_PASSWORD / REDIS_SENTINEL_PASSWORD). Throws
 * RedisConfigError listing every problem, each naming its variable.
 */
export function parseRedisTarget(s: RedisSettings, names: Record<keyof RedisSettings, string> = REDIS_ENV): RedisTarget {
  const problems: string[] = [];
  const sentinels = s.redisSentinels?.length ? s.redisSentinels : undefined;
  const cluster = s.redisClusterNodes?.length ? s.redisClusterNodes : undefined;
  const password = s.redisPassword || undefined;
  if (sentinels && cluster) {
    problems.push(
      `settings ${names.redisSentinels} and ${names.redisClusterNodes} are both set: Redis is either behind Sentinel or a Cluster; keep one`,
    );
  }
  if ((sentinels || cluster) && s.redisUrl) {
    problems.push(
      `setting ${names.redisUrl} is for one Redis node; with ${sentinels ? names.redisSentinels : names.redisClusterNodes} leave it unset (put the password in ${names.redisPassword})`,
    );
  }
  if (sentinels && !s.redisSentinelMaster)
    problems.push(
      `setting ${names.redisSentinelMaster} is required with ${names.redisSentinels}: the master name the sentinels monitor (as in "sentinel monitor NAME …")`,
    );
  if (!sentinels && s.redisSentinelMaster)
    problems.push(`setting ${names.redisSentinelMaster} needs ${names.redisSentinels} (the sentinels' host:port list)`);
  if (!sentinels && s.redisSentinelPassword) problems.push(`setting ${names.redisSentinelPassword} needs ${names.redisSentinels}`);
  if (!sentinels && !cluster && !s.redisUrl) {
    problems.push(
      `setting ${names.redisUrl} (environment) is required: redis://host:port, unix:///path or a socket path (or ${names.redisSentinels} + ${names.redisSentinelMaster} for Sentinel, or ${names.redisClusterNodes} for a Cluster)`,
    );
  }
  let target: RedisTarget | undefined;
  if (sentinels) {
    const list = hostPorts(sentinels, names.redisSentinels, problems);
    target = {
      mode: 'sentinel',
      sentinels: list,
      masterName: s.redisSentinelMaster ?? '',
      ...(password ? { password } : {}),
      ...(s.redisSentinelPassword ? { sentinelPassword: s.redisSentinelPassword } : {}),
    };
  } else if (cluster) {
    target = { mode: 'cluster', nodes: hostPorts(cluster, names.redisClusterNodes, problems), ...(password ? { password } : {}) };
  } else if (s.redisUrl) {
    try {
      const o = redisOptions(s.redisUrl);
      if (o.password && password)
        problems.push(`the Redis password is set twice, in ${names.redisUrl} and in ${names.redisPassword}; keep one`);
    } catch (err) {
      problems.push(`setting ${names.redisUrl}: ${(err as Error).message}`);
    }
    target = { mode: 'single', url: s.redisUrl, ...(password ? { password } : {}) };
  }
  if (problems.length || !target) throw new RedisConfigError(problems);
  return target;
}

/** For messages: where this target points. */
export function describeRedisTarget(t: RedisTarget | string): string {
  if (typeof t === 'string') return `Redis at ${t}`;
  const list = (xs: HostPort[]): string => xs.map((x) => `${x.host}:${x.port}`).join(',');
  if (t.mode === 'single') return `Redis at ${t.url}`;
  if (t.mode === 'sentinel') return `Redis master "${t.masterName}" via sentinels ${list(t.sentinels)}`;
  return `Redis Cluster ${list(t.nodes)}`;
}

/**
 * Connection options from REDIS_URL: `redis://host:port/db`, `rediss://…`, `unix:///path/redis.sock`, or a bare socket path.
 */
export function redisOptions(url: string): RedisOptions {
  if (url.startsWith('/') || url.startsWith('unix:')) {
    const path = url.startsWith('unix:') ? new URL(url).pathname : url;
    return { path };
  }
  const u = new URL(url);
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') {
    throw new Error(`REDIS_URL must start with redis://, rediss://, unix:// or be a socket path; received ${JSON.stringify(url)}`);
  }
  return {
    host: u.hostname || '127.0.0.1',
    port: u.port ? Number(u.port) : 6379,
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    db: u.pathname && u.pathname.length > 1 ? Number(u.pathname.slice(1)) : 0,
    ...(u.protocol === 'rediss:' ? { tls: {} } : {}),
  };
}

export type RedisMode = 'blocking' | 'fail-fast';

export interface CreateRedisOptions {
  /** Do not connect until first used (a template for BullMQ classes that duplicate their connection). */
  lazy?: boolean;
}

/**
 * The one way to open a connection to the project's Redis.
 * `blocking`: for BullMQ workers and event readers (commands wait through reconnects and failovers).
 * `fail-fast`: for the gateway, so a request answers 503 at once while Redis is down instead of hanging.
 * A string is a REDIS_URL (tools and tests).
 */
export function createRedis(target: RedisTarget | string, mode: RedisMode, name?: string, opts: CreateRedisOptions = {}): RedisConnection {
  const t: RedisTarget = typeof target === 'string' ? { mode: 'single', url: target } : target;
  // Retry soon and often: after a failover the first attempt that reaches the new master ends the outage.
  const retryStrategy = (times: number): number => Math.min(100 * times, 1000);
  const perMode: RedisOptions =
    mode === 'blocking'
      ? { maxRetriesPerRequest: null, enableReadyCheck: true }
      : { maxRetriesPerRequest: 1, enableOfflineQueue: false, connectTimeout: 2000 };
  const common: RedisOptions = {
    ...perMode,
    retryStrategy,
    ...(name ? { connectionName: name } : {}),
    ...(opts.lazy ? { lazyConnect: true } : {}),
    // A node that was demoted to replica under us answers READONLY: reconnect (Sentinel finds the new master) and resend.
    reconnectOnError: (err: Error) => (/^READONLY/.test(err.message) ? 2 : false),
  };
  if (t.mode === 'single') {
    return new Redis({ ...redisOptions(t.url), ...(t.password ? { password: t.password } : {}), ...common });
  }
  if (t.mode === 'sentinel') {
    return new Redis({
      ...common,
      sentinels: t.sentinels,
      name: t.masterName,
      ...(t.username ? { username: t.username } : {}),
      ...(t.password ? { password: t.password } : {}),
      ...(t.sentinelPassword ? { sentinelPassword: t.sentinelPassword } : {}),
      // Not failoverDetector: in ioredis 5.11 a +switch-master arriving while the client waits to reconnect ends the
      // client for good (status "end", measured in test/redis-modes.test.ts's set-up); retrying via the sentinels is enough.
      sentinelRetryStrategy: retryStrategy,
    });
  }
  const { retryStrategy: _r, enableOfflineQueue, lazyConnect, ...nodeOptions } = common;
  const options: ClusterOptions = {
    redisOptions: { ...nodeOptions, ...(t.username ? { username: t.username } : {}), ...(t.password ? { password: t.password } : {}) },
    clusterRetryStrategy: retryStrategy,
    ...(enableOfflineQueue === false ? { enableOfflineQueue: false } : {}),
    ...(lazyConnect ? { lazyConnect: true } : {}),
    enableReadyCheck: true,
    // MOVED/ASK after a failover: follow them a few times before giving up (a request answers 503 then).
    maxRedirections: 16,
    retryDelayOnFailover: 200,
    retryDelayOnClusterDown: 200,
  };
  return new Cluster(t.nodes, options);
}

export function isCluster(redis: RedisConnection): redis is Cluster {
  return (redis as Cluster).isCluster === true;
}

/** The master nodes to check settings on: the one server, or every master of a cluster. */
function masters(redis: RedisConnection): Redis[] {
  return isCluster(redis) ? redis.nodes('master') : [redis];
}

export class RedisPolicyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RedisPolicyError';
  }
}

/** Refuse to run unless Redis evicts nothing: BullMQ loses jobs under any other maxmemory-policy. */
export async function assertNoEviction(redis: RedisConnection): Promise<void> {
  for (const node of masters(redis)) {
    let policy: string | undefined;
    try {
      const res = (await node.call('CONFIG', 'GET', 'maxmemory-policy')) as string[];
      policy = res[1];
    } catch {
      // CONFIG may be disabled on managed Redis; INFO still tells.
      const info = await node.info('memory');
      policy = /maxmemory_policy:(\S+)/.exec(info)?.[1];
    }
    if (policy !== 'noeviction') {
      const where = isCluster(redis) ? ` on cluster node ${node.options.host}:${node.options.port}` : '';
      throw new RedisPolicyError(
        `Redis maxmemory-policy is ${JSON.stringify(policy ?? 'unknown')}${where}, but it must be "noeviction": under any other policy Redis may evict queued jobs. ` +
          'Set "maxmemory-policy noeviction" in redis.conf (or run: redis-cli CONFIG SET maxmemory-policy noeviction) and start again.',
      );
    }
  }
}

/** Wait until a connection is ready, or throw a message that says how to point at Redis. */
export async function waitForRedis(redis: RedisConnection, timeoutMs: number, target: RedisTarget | string): Promise<void> {
  if (redis.status === 'ready') return;
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => {
      cleanup();
      const how =
        typeof target === 'string' || target.mode === 'single'
          ? 'start redis-server or set REDIS_URL to a reachable server'
          : target.mode === 'sentinel'
            ? 'check REDIS_SENTINELS (reachable sentinels) and REDIS_SENTINEL_MASTER (the name they monitor)'
            : 'check REDIS_CLUSTER_NODES (reachable cluster nodes, cluster_state:ok)';
      reject(new Error(`cannot reach ${describeRedisTarget(target)} within ${timeoutMs} ms; ${how}`));
    }, timeoutMs);
    const onReady = (): void => {
      cleanup();
      resolve();
    };
    const cleanup = (): void => {
      clearTimeout(t);
      redis.off('ready', onReady);
    };
    redis.on('ready', onReady);
  });
}

/** Errors that mean "Redis is unreachable or mid-failover right now" (the request may be retried), not a bug. */
export function isRedisUnavailableError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const name = err.name ?? '';
  const msg = err.message ?? '';
  return (
    name === 'MaxRetriesPerRequestError' ||
    name === 'ClusterAllFailedError' ||
    /Connection is closed|Stream isn't writeable|enableOfflineQueue|Cluster isn't ready|Failed to refresh slots cache|ECONNREFUSED|ECONNRESET|EHOSTUNREACH|ENOENT.*redis|connect ETIMEDOUT|Command timed out|All sentinels are unreachable|^(CLUSTERDOWN|TRYAGAIN|READONLY|LOADING|MASTERDOWN|NOREPLICAS)/i.test(
      msg,
    )
  );
}
