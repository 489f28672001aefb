import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BatchAccepted, BatchView, HostState } from '@photoenhance/contracts';
import { JobRecords, KEY_PREFIX, ReplicaWait, createRedis, keys, parseRedisTarget, waitForRedis } from '@photoenhance/queue';
import { loadGatewayConfig } from '../apps/gateway/src/config.js';
import { loadWorkerConfig } from '../apps/worker/src/config.js';
import { startLauncher } from '../apps/cli/test/launch.js';
import { smallPhoto } from './support/images.js';
import { startTestRedis } from './support/redis.js';
import { startClusterRedis } from './support/redis-cluster.js';
import { startSentinelRedis, type SentinelRedis } from './support/redis-sentinel.js';
import { fixtureEngine, startStack, submit, until, waitForStatus, type Stack } from './support/stack.js';
import { readSse, readZip } from './support/zip.js';

/**
 * The same end-to-end checks on one Redis node, on Redis behind Sentinel and on a Redis Cluster, each with real
 * redis-server processes started here, the real gateway and the real worker app connected through the REDIS_* settings.
 * Then the failure that matters most: the Sentinel master is SIGKILLed while clients submit.
 */

interface Servers {
  env: Record<string, string>;
  /** Every key the project wrote, from every data node. */
  allKeys(): Promise<string[]>;
  close(): Promise<void>;
}

const MODES: Record<string, () => Promise<Servers>> = {
  'one node': async () => {
    const r = await startTestRedis();
    return { env: { REDIS_URL: r.url }, allKeys: () => r.client().keys('*'), close: () => r.close() };
  },
  sentinel: async () => {
    // A slow failure detection: a loaded test machine must not make the sentinels fail over in the middle of these checks.
    const s = await startSentinelRedis({ downAfterMs: 5000 });
    return { env: s.env, allKeys: () => s.master.client().keys('*'), close: () => s.close() };
  },
  cluster: async () => {
    const c = await startClusterRedis();
    return {
      env: c.env,
      allKeys: async () => (await Promise.all(c.nodes.map((n) => n.client().keys('*')))).flat(),
      close: () => c.close(),
    };
  },
};

const ENGINES = [
  fixtureEngine('paced', 'resize', 50, { poolSize: 2 }),
  fixtureEngine('slow', 'sleep', 30_000, { poolSize: 1, stopGraceMs: 1000 }),
];
// No OVERLOADED self-protection here: on a loaded test machine event-loop delay would add 503s unrelated to Redis.
const GATEWAY = { knownEngines: ['paced', 'slow'], defaultEngine: 'paced', maxEventLoopDelayMs: 0 };

type Accepted = { id: string; links: { self: string; result: string } };

/** The 202 body; anything else fails with the problem the gateway sent. */
async function acceptedBody<T = Accepted>(res: Response): Promise<T> {
  const body = (await res.json()) as T;
  expect({ status: res.status, body: res.status === 202 ? 'ok' : body }).toEqual({ status: 202, body: 'ok' });
  return body;
}

describe.each(Object.keys(MODES))('Redis %s', (mode) => {
  let servers: Servers;
  let stack: Omit<Stack, 'redis'>;

  beforeAll(async () => {
    servers = await MODES[mode]!();
    stack = await startStack({ redis: servers, gateway: GATEWAY, engines: ENGINES });
  }, 90_000);

  afterAll(async () => {
    await stack?.close();
    await servers?.close();
  });

  it('submit → SSE events → completed → download', async () => {
    const { gw } = stack;
    const accepted = await acceptedBody(await submit(gw.url, await smallPhoto('jpeg', 120), { scale: '2' }));
    const view = await waitForStatus(gw.url, accepted.id, ['completed', 'failed']);
    expect(view.status).toBe('completed');
    // The first SSE client of an engine starts this gateway's event reader for it (live events: the batch below).
    const events = await readSse(
      await fetch(`${gw.url}/v1/jobs/${accepted.id}/events`),
      (evs) => evs.some((e) => e.event === 'status'),
      10_000,
    );
    expect(events.at(-1)).toMatchObject({ event: 'status', data: { status: 'completed' } });
    const dl = await fetch(`${gw.url}${accepted.links.result}`);
    expect(dl.status).toBe(200);
    expect((await dl.arrayBuffer()).byteLength).toBeGreaterThan(100);
  });

  it('a batch runs every item and serves results.zip', async () => {
    const { gw } = stack;
    const jpeg = await smallPhoto('jpeg', 64);
    const form = new FormData();
    form.append('scale', '1');
    for (let i = 0; i < 3; i++) form.append('images', new Blob([jpeg], { type: 'image/jpeg' }), `b${i}.jpg`);
    const batch = await acceptedBody<BatchAccepted>(await fetch(`${gw.url}/v1/batches`, { method: 'POST', body: form }));
    const events = await readSse(
      await fetch(`${gw.url}/v1/batches/${batch.id}/events`),
      (evs) => evs.some((e) => e.event === 'status' && (e.data as { status: string }).status === 'completed'),
      30_000,
    );
    expect(events.at(-1)).toMatchObject({ event: 'status', data: { status: 'completed' } });
    expect(events.filter((e) => e.event === 'item' && (e.data as { status: string }).status === 'completed')).toHaveLength(3);
    const done = await until(
      'the batch to finish',
      async () => {
        const v = (await (await fetch(`${gw.url}/v1/batches/${batch.id}`)).json()) as BatchView;
        return v.status === 'completed' ? v : undefined;
      },
      60_000,
      100,
    );
    expect(done.counts.completed).toBe(3);
    const zip = await fetch(`${gw.url}${batch.links.results}`);
    expect(zip.status).toBe(200);
    expect((await readZip(Buffer.from(await zip.arrayBuffer()))).size).toBe(3);
  });

  it('an Idempotency-Key replays the first answer', async () => {
    const { gw } = stack;
    const photo = await smallPhoto('jpeg', 48);
    const post = async (): Promise<Response> => {
      const form = new FormData();
      form.append('scale', '1');
      form.append('image', new Blob([photo], { type: 'image/jpeg' }), 'p.jpg');
      return fetch(`${gw.url}/v1/jobs`, {
        method: 'POST',
        body: form,
        headers: { 'idempotency-key': `modes-${mode.replace(/\W/g, '')}-1` },
      });
    };
    const first = await acceptedBody(await post());
    const res = await post();
    expect(res.headers.get('idempotent-replayed')).toBe('true');
    expect((await acceptedBody(res)).id).toBe(first.id);
  });

  it('cancelling an active job reaches its worker over pub/sub', async () => {
    const { gw, worker } = stack;
    const res = await submit(gw.url, await smallPhoto('jpeg', 48), { engine: 'slow', scale: '1' });
    const { id } = (await res.json()) as Accepted;
    await waitForStatus(gw.url, id, ['active']);
    // Running in its engine (not still waiting for the engine to start), so the stop must come over pub/sub.
    await until(
      'the slow engine to be busy',
      async () => {
        const sys = (await (await fetch(`${gw.url}/v1/system`)).json()) as { hosts: HostState[] };
        return sys.hosts.some((h) => h.processes.some((p) => p.profile === 'slow' && p.state === 'busy'));
      },
      30_000,
    );
    expect((await fetch(`${gw.url}/v1/jobs/${id}`, { method: 'DELETE' })).status).toBe(200);
    await worker.waitForLog((r) => r.jobId === id && String(r.reason).startsWith('JOB_CANCELED'), 20_000);
  });

  it('the worker heartbeat lists the host; /readyz is ready', async () => {
    const { gw, worker } = stack;
    const sys = (await (await fetch(`${gw.url}/v1/system`)).json()) as { hosts: HostState[] };
    expect(sys.hosts.map((h) => h.pid)).toContain(worker.pid);
    const ready = await fetch(`${gw.url}/readyz`);
    expect(ready.status).toBe(200);
  });

  it('every key the project wrote carries the {pe} hash tag (one slot: valid for MULTI, pipelines and Lua on a cluster)', async () => {
    const all = await servers.allKeys();
    expect(all.length).toBeGreaterThan(10);
    expect(all.filter((k) => !k.startsWith(`${KEY_PREFIX}:`))).toEqual([]);
  });
});

describe('Redis settings', () => {
  const gatewayProblems = (env: Record<string, string>): string => {
    try {
      loadGatewayConfig({ env });
      return '';
    } catch (err) {
      return (err as Error).message;
    }
  };

  it('each mode parses into one target that both apps share', () => {
    const env = {
      REDIS_SENTINELS: '10.0.0.1:26379, 10.0.0.2:26379',
      REDIS_SENTINEL_MASTER: 'pe',
      REDIS_PASSWORD: 'data-pw',
      REDIS_SENTINEL_PASSWORD: 'sentinel-pw',
    };
    const expected = {
      mode: 'sentinel',
      masterName: 'pe',
      sentinels: [
        { host: '10.0.0.1', port: 26379 },
        { host: '10.0.0.2', port: 26379 },
      ],
      password: 'data-pw',
      sentinelPassword: 'sentinel-pw',
    };
    expect(loadGatewayConfig({ env }).redis).toEqual(expected);
    expect(loadWorkerConfig({ env }).redis).toEqual(expected);
    expect(loadGatewayConfig({ env: { REDIS_CLUSTER_NODES: '10.0.0.1:7000,[::1]:7001' } }).redis).toEqual({
      mode: 'cluster',
      nodes: [
        { host: '10.0.0.1', port: 7000 },
        { host: '::1', port: 7001 },
      ],
    });
    expect(loadWorkerConfig({ env: { REDIS_URL: '/tmp/r.sock' } }).redis).toEqual({ mode: 'single', url: '/tmp/r.sock' });
  });

  it('bad combinations are configuration errors naming the variables', () => {
    expect(gatewayProblems({ REDIS_SENTINELS: 'a:1', REDIS_SENTINEL_MASTER: 'pe', REDIS_CLUSTER_NODES: 'b:2' })).toMatch(
      /REDIS_SENTINELS and REDIS_CLUSTER_NODES are both set/,
    );
    expect(gatewayProblems({ REDIS_SENTINELS: 'a:1' })).toMatch(/REDIS_SENTINEL_MASTER is required with REDIS_SENTINELS/);
    expect(gatewayProblems({ REDIS_URL: 'redis://x:6379', REDIS_SENTINEL_MASTER: 'pe' })).toMatch(
      /REDIS_SENTINEL_MASTER needs REDIS_SENTINELS/,
    );
    expect(gatewayProblems({ REDIS_URL: 'redis://x:6379', REDIS_CLUSTER_NODES: 'a:1' })).toMatch(
      /REDIS_URL is for one Redis node; with REDIS_CLUSTER_NODES leave it unset/,
    );
    expect(gatewayProblems({ REDIS_CLUSTER_NODES: 'a:1,nonsense' })).toMatch(
      /REDIS_CLUSTER_NODES must be a comma list of host:port.*"nonsense"/,
    );
    expect(gatewayProblems({ REDIS_URL: 'redis://:pw@x:6379', REDIS_PASSWORD: 'pw2' })).toMatch(
      /password is set twice, in REDIS_URL and in REDIS_PASSWORD/,
    );
    expect(gatewayProblems({ REDIS_URL: 'redis://x', REDIS_WAIT_REPLICAS: 'one' })).toMatch(/REDIS_WAIT_REPLICAS/);
    expect(gatewayProblems({})).toMatch(
      /REDIS_URL \(environment\) is required.*REDIS_SENTINELS \+ REDIS_SENTINEL_MASTER.*REDIS_CLUSTER_NODES/,
    );
    expect(() => loadWorkerConfig({ env: { REDIS_SENTINELS: 'a:1' } })).toThrow(
      /worker: invalid configuration[\s\S]*REDIS_SENTINEL_MASTER/,
    );
  });
});

describe('photoenhance start with REDIS_SENTINELS', () => {
  it('starts no private Redis and hands the Sentinel settings to the gateway and the worker', async () => {
    const s = await startSentinelRedis({ downAfterMs: 5000 });
    const launcher = await startLauncher({ env: { ...s.env, REDIS_URL: undefined } }).catch(async (err: unknown) => {
      await s.close();
      throw err;
    });
    try {
      expect(launcher.output()).toContain(`using Redis via REDIS_SENTINELS=${s.env.REDIS_SENTINELS}`);
      expect(
        launcher
          .state()
          .children.map((c) => c.name)
          .sort(),
      ).toEqual(['gateway', 'worker']);
      expect((await fetch(`${launcher.url}/readyz`)).status).toBe(200);
      // The worker's heartbeat is on the Sentinel master.
      expect(await s.master.client().zcard(keys.hostIndex)).toBe(1);
    } finally {
      await launcher.dispose();
      await s.close();
    }
  }, 180_000);
});

describe('Redis Cluster with replicas: WAIT reaches the master owning the project slot', () => {
  it('confirms through that master, and reports a shortfall when its replica stops acknowledging', async () => {
    const c = await startClusterRedis({ masters: 3, replicasPerMaster: 1 });
    const redis = createRedis(parseRedisTarget({ redisClusterNodes: c.env.REDIS_CLUSTER_NODES!.split(',') }), 'fail-fast', 'wait-check');
    redis.on('error', () => undefined);
    try {
      await waitForRedis(redis, 10_000, 'cluster');
      // WAIT answers as soon as the replica acknowledges: the healthy case gets a long timeout, since on a loaded
      // machine a live replica's acknowledgement once took over 500 ms; the frozen case needs only a short one.
      const healthy = new ReplicaWait(redis, { replicas: undefined, timeoutMs: 10_000 });
      const wait = new ReplicaWait(redis, { replicas: undefined, timeoutMs: 500 });
      await new JobRecords(redis, 60).create('j_waitcheck', 'paced', Date.now());
      expect(await healthy.confirm()).toEqual({ needed: 1, acked: 1, ok: true });
      // Freeze every replica: the owner's replica among them stops acknowledging.
      const roles = await Promise.all(c.nodes.map(async (n) => ((await n.client().call('ROLE')) as unknown[])[0]));
      const replicas = c.nodes.filter((_, i) => roles[i] === 'slave');
      expect(replicas).toHaveLength(3);
      for (const r of replicas) process.kill(r.pid!, 'SIGSTOP');
      try {
        await new JobRecords(redis, 60).create('j_waitcheck2', 'paced', Date.now());
        expect(await wait.confirm()).toEqual({ needed: 1, acked: 0, ok: false });
      } finally {
        for (const r of replicas) process.kill(r.pid!, 'SIGCONT');
      }
    } finally {
      redis.disconnect();
      await c.close();
    }
  }, 60_000);
});

describe('Redis Sentinel: durability and failover', () => {
  let s: SentinelRedis;
  let stack: Omit<Stack, 'redis'>;

  beforeAll(async () => {
    s = await startSentinelRedis({ downAfterMs: 1000, failoverTimeoutMs: 5000 });
    stack = await startStack({ redis: s, gateway: { ...GATEWAY, redisWaitTimeoutMs: 500 }, engines: ENGINES });
  }, 90_000);

  afterAll(async () => {
    await stack?.close();
    await s?.close();
  });

  it('a 202 means a replica holds the job; when no replica confirms in time the answer is 503 NOT_REPLICATED and no job is left', async () => {
    const { gw } = stack;
    const photo = await smallPhoto('jpeg', 48);
    const ok = await submit(gw.url, photo, { scale: '1' });
    expect(ok.status).toBe(202);
    const { id } = (await ok.json()) as Accepted;
    // Read straight from the replica right after the answer: WAIT made sure it is there.
    expect(await s.replicas[0]!.client().exists(keys.record(id))).toBe(1);

    // A replica that stops acknowledging (frozen, still connected as far as the master knows).
    const replicaPid = s.replicas[0]!.pid!;
    process.kill(replicaPid, 'SIGSTOP');
    try {
      const t0 = Date.now();
      const refused = await submit(gw.url, photo, { scale: '1' });
      const took = Date.now() - t0;
      expect(refused.status).toBe(503);
      expect(refused.headers.get('retry-after')).toMatch(/^\d+$/);
      const body = (await refused.json()) as { code: string; replicasNeeded: number; replicasAcked: number };
      expect(body).toMatchObject({ code: 'NOT_REPLICATED', replicasNeeded: 1, replicasAcked: 0 });
      expect(took).toBeLessThan(10_000);
    } finally {
      process.kill(replicaPid, 'SIGCONT');
    }
    // The refused job was withdrawn: canceled if still queued or running; if a worker already finished it (the engine is
    // faster than the WAIT timeout), deleted with its result. Either way nobody sees it completed.
    const m = s.master.client();
    const records = await m.keys(keys.record('*'));
    expect(records).toHaveLength(2);
    const refusedId = records.map((k) => k.slice(keys.record('').length)).find((x) => x !== id)!;
    const refusedView = (await (await fetch(`${gw.url}/v1/jobs/${refusedId}`)).json()) as { status: string | number; code?: string };
    expect(refusedView.status === 'canceled' || refusedView.code === 'JOB_EXPIRED').toBe(true);
    expect((await fetch(`${gw.url}/v1/jobs/${refusedId}/result`)).status).not.toBe(200);
    const settled = await until(
      'the withdrawn job to be gone or finished',
      async () => {
        const h = await m.hgetall(`${keys.queueBase('paced')}:${refusedId}`);
        return Object.keys(h).length === 0 || h.finishedOn ? h : undefined;
      },
      30_000,
    );
    expect(settled.returnvalue).toBeUndefined();
    await waitForStatus(gw.url, id, ['completed']);
  });

  it('the master is SIGKILLed mid-stream: 503 REDIS_UNAVAILABLE in the gap (no hang, no 500), resumes by itself, no accepted job lost', async () => {
    const { gw, worker } = stack;
    const photo = await smallPhoto('jpeg', 40);
    const before = (await (await fetch(`${gw.url}/v1/system`)).json()) as { hosts: HostState[] };
    const enginePids = before.hosts
      .find((h) => h.pid === worker.pid)!
      .processes.map((p) => p.pid)
      .filter(Boolean);

    const accepted: Array<{ id: string; start: number; at: number }> = [];
    const answers: Array<{ at: number; status: number; code?: string; retryAfter: string | null; ms: number }> = [];
    const readyz: Array<{ at: number; status: number }> = [];
    let killedAt = 0;
    let stop = false;

    // Clients: 3 submitting in a loop; each request must answer within 15 s (a hang fails the test).
    const client = async (): Promise<void> => {
      for (let i = 0; i < 400 && !stop; i++) {
        const t0 = Date.now();
        const form = new FormData();
        form.append('scale', '1');
        form.append('image', new Blob([photo], { type: 'image/jpeg' }), 'f.jpg');
        const res = await fetch(`${gw.url}/v1/jobs`, { method: 'POST', body: form, signal: AbortSignal.timeout(15_000) });
        const body = (await res.json()) as { id?: string; code?: string };
        answers.push({
          at: t0,
          status: res.status,
          ...(body.code ? { code: body.code } : {}),
          retryAfter: res.headers.get('retry-after'),
          ms: Date.now() - t0,
        });
        if (res.status === 202) accepted.push({ id: body.id!, start: t0, at: Date.now() });
        else await new Promise((r) => setTimeout(r, 100));
      }
    };
    const probe = async (): Promise<void> => {
      for (let i = 0; i < 2000 && !stop; i++) {
        const res = await fetch(`${gw.url}/readyz`, { signal: AbortSignal.timeout(15_000) });
        await res.body?.cancel();
        readyz.push({ at: Date.now(), status: res.status });
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    const running = [client(), client(), client(), probe()];

    await until('some submissions accepted before the kill', () => accepted.length >= 10, 30_000);
    const old = await s.currentMaster();
    killedAt = Date.now();
    await s.nodeAt(old)!.kill('SIGKILL');
    const promoted = await s.waitForFailover(old, 30_000);
    const promotedAt = Date.now();
    await until('submissions accepted again after the failover', () => accepted.filter((a) => a.at > promotedAt).length >= 10, 60_000);
    stop = true;
    await Promise.all(running);

    // Every answer was a 202 or a 503 with Retry-After and a catalogue code; none hung (fetch would have thrown).
    const odd = answers.filter(
      (a) => a.status !== 202 && !(a.status === 503 && a.retryAfter && ['REDIS_UNAVAILABLE', 'NOT_REPLICATED'].includes(a.code ?? '')),
    );
    expect(odd).toEqual([]);
    const gap = answers.filter((a) => a.at >= killedAt && a.status === 503);
    expect(gap.length).toBeGreaterThan(0);
    expect(gap.every((a) => a.ms < 5000)).toBe(true);
    // /readyz told the truth: not ready during the gap, ready again after.
    expect(readyz.some((r) => r.at > killedAt && r.status === 503)).toBe(true);
    expect(readyz.at(-1)!.status).toBe(200);

    // Every accepted job completes (none lost), before and after the failover.
    const lost: string[] = [];
    // The master is dead once kill() returned: a request started later was accepted by the new master.
    const firstAfter = accepted.filter((a) => a.start > killedAt).sort((x, y) => x.at - y.at)[0]!;
    let firstCompletedAfterKill = Infinity;
    const acceptedAfterKill = new Set(accepted.filter((a) => a.start > killedAt).map((a) => a.id));
    for (const a of accepted) {
      try {
        const v = await waitForStatus(gw.url, a.id, ['completed', 'failed'], 90_000);
        if (v.status !== 'completed') lost.push(`${a.id} ${String(v.status)}`);
        else if (acceptedAfterKill.has(a.id)) firstCompletedAfterKill = Math.min(firstCompletedAfterKill, Date.parse(String(v.finishedAt)));
      } catch (err) {
        lost.push(`${a.id} ${(err as Error).message}`);
      }
    }
    const figures = {
      accepted: accepted.length,
      acceptedBeforeKill: accepted.filter((a) => a.start < killedAt).length,
      lost: lost.length,
      answers503InGap: gap.length,
      slowest503Ms: Math.max(...gap.map((a) => a.ms)),
      promotionMs: promotedAt - killedAt,
      firstAcceptedAfterKillMs: firstAfter.at - killedAt,
      // Master death → the first job submitted after it has completed (submitted, run and recorded on the new master).
      firstCompletedAfterKillMs: firstCompletedAfterKill - killedAt,
      newMaster: `${promoted.host}:${promoted.port}`,
    };
    console.log(`redis failover figures: ${JSON.stringify(figures)}`);
    expect(lost).toEqual([]);

    // The worker kept its process and its engines.
    const after = (await (await fetch(`${gw.url}/v1/system`)).json()) as { hosts: HostState[] };
    const host = after.hosts.find((h) => h.pid === worker.pid);
    expect(host).toBeDefined();
    expect({ pids: host!.processes.map((p) => p.pid).filter((p) => enginePids.includes(p)), recycles: host!.recycleEvents ?? [] }).toEqual({
      pids: enginePids,
      recycles: [],
    });
  }, 240_000);
});
