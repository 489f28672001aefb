import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BatchAccepted, BatchView, HostState } from '@photoenhance/contracts';
import { KEY_PREFIX, keys } from '@photoenhance/queue';
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
    const s = await startSentinelRedis();
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

const ENGINES = [fixtureEngine('paced', 'resize', 50, { poolSize: 2 })];
const GATEWAY = { knownEngines: ['paced'], defaultEngine: 'paced' };

type Accepted = { id: string; links: { self: string; result: string } };

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
    const res = await submit(gw.url, await smallPhoto('jpeg', 120), { scale: '2' });
    expect(res.status).toBe(202);
    const accepted = (await res.json()) as Accepted;
    const events = await readSse(await fetch(`${gw.url}/v1/jobs/${accepted.id}/events`), (evs) => evs.some((e) => e.event === 'status' && ['completed', 'failed'].includes((e.data as { status: string }).status)));
    expect(events.at(-1)).toMatchObject({ event: 'status', data: { status: 'completed' } });
    const view = await waitForStatus(gw.url, accepted.id, ['completed', 'failed']);
    expect(view.status).toBe('completed');
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
    const res = await fetch(`${gw.url}/v1/batches`, { method: 'POST', body: form });
    expect(res.status).toBe(202);
    const batch = (await res.json()) as BatchAccepted;
    const done = await until('the batch to finish', async () => {
      const v = (await (await fetch(`${gw.url}/v1/batches/${batch.id}`)).json()) as BatchView;
      return v.status === 'completed' ? v : undefined;
    }, 60_000, 100);
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
      return fetch(`${gw.url}/v1/jobs`, { method: 'POST', body: form, headers: { 'idempotency-key': `modes-${mode.replace(/\W/g, '')}-1` } });
    };
    const first = await post();
    expect(first.status).toBe(202);
    const second = await post();
    expect(second.status).toBe(202);
    expect(second.headers.get('idempotent-replayed')).toBe('true');
    expect(((await second.json()) as Accepted).id).toBe(((await first.json()) as Accepted).id);
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
    // Nothing of the refused job stays: the only job record and job hash are the accepted job's.
    const m = s.master.client();
    expect(await m.keys(keys.record('*'))).toEqual([keys.record(id)]);
    expect(await m.keys(`${keys.queueBase('paced')}:j_*`).then((ks) => ks.filter((k) => /:j_[a-z0-9]+$/.test(k)))).toEqual([`${keys.queueBase('paced')}:${id}`]);
    await waitForStatus(gw.url, id, ['completed']);
  });

  it('the master is SIGKILLed mid-stream: 503 REDIS_UNAVAILABLE in the gap (no hang, no 500), resumes by itself, no accepted job lost', async () => {
    const { gw, worker } = stack;
    const photo = await smallPhoto('jpeg', 40);
    const before = (await (await fetch(`${gw.url}/v1/system`)).json()) as { hosts: HostState[] };
    const enginePids = before.hosts.find((h) => h.pid === worker.pid)!.processes.map((p) => p.pid).filter(Boolean);

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
        answers.push({ at: t0, status: res.status, ...(body.code ? { code: body.code } : {}), retryAfter: res.headers.get('retry-after'), ms: Date.now() - t0 });
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
    const odd = answers.filter((a) => a.status !== 202 && !(a.status === 503 && a.retryAfter && ['REDIS_UNAVAILABLE', 'NOT_REPLICATED'].includes(a.code ?? '')));
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
    for (const a of accepted) {
      try {
        const v = await waitForStatus(gw.url, a.id, ['completed', 'failed'], 90_000);
        if (v.status !== 'completed') lost.push(`${a.id} ${String(v.status)}`);
        else firstCompletedAfterKill = Math.min(firstCompletedAfterKill, Date.parse(String(v.finishedAt)) >= killedAt ? Date.parse(String(v.finishedAt)) : Infinity);
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
      firstCompletedAfterKillMs: firstCompletedAfterKill - killedAt,
      newMaster: `${promoted.host}:${promoted.port}`,
    };
    console.log(`redis failover figures: ${JSON.stringify(figures)}`);
    expect(lost).toEqual([]);

    // The worker kept its process and its engines.
    const after = (await (await fetch(`${gw.url}/v1/system`)).json()) as { hosts: HostState[] };
    const host = after.hosts.find((h) => h.pid === worker.pid);
    expect(host).toBeDefined();
    for (const pid of enginePids) expect(host!.processes.map((p) => p.pid)).toContain(pid);
  }, 240_000);
});
