import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { smallPhoto } from './support/images.js';
import { fixtureEngine } from './support/stack.js';
import { spawn, spawnSync } from 'node:child_process';
import {
  cleanStale,
  createNetwork,
  execOn,
  linkExists,
  namespaceExists,
  netnsUnavailable,
  NS_PREFIX,
  startMultiHost,
  type MultiHost,
  type RoleHost,
} from './support/netns.js';

/**
 * Many hosts, really separate on the network: every component in its own network namespace on a private test subnet
 * (test/support/netns.ts), started with its role command. A Redis master, a replica and three sentinels; an
 * S3-compatible server (s3rver); two gateways; three worker hosts, each with its own HOST_ID, governor and temp dir, and
 * no shared folder. Each scenario counts accepted (202) jobs against completed results.
 *
 * Root only (ip netns); skipped with the reason elsewhere. MULTIHOST_ECHO=1 prints every process's output.
 */

const noNetns = netnsUnavailable();
if (noNetns) console.warn(`multihost suite skipped: ${noNetns}`);

describe.skipIf(!!noNetns)('the test network itself (namespaces, veth, bridge on a private subnet)', () => {
  it('hosts reach each other on the test subnet, a cut link isolates a host, and close() removes everything', async () => {
    const net = await createNetwork(['a', 'b']);
    const [a, b] = [net.host('a'), net.host('b')];
    try {
      expect(a.address).toMatch(/^10\.254\.\d+\.10$/);
      // Nothing but the test subnet inside: no default route out of a namespace.
      expect(execOn(a, 'ip', ['-4', 'route', 'show'])).not.toMatch(/default/);
      const srv = b.spawn('redis-server', [
        '--bind',
        b.address,
        '--port',
        '6379',
        '--protected-mode',
        'no',
        '--save',
        '',
        '--appendonly',
        'no',
      ]);
      await srv.waitForLine(/Ready to accept connections/, 10_000);
      expect(execOn(a, 'redis-cli', ['-h', b.address, '-p', '6379', 'PING']).trim()).toBe('PONG');
      b.linkDown();
      expect(
        spawnSync('ip', ['netns', 'exec', a.ns, 'timeout', '2', 'redis-cli', '-h', b.address, '-p', '6379', 'PING'], {
          encoding: 'utf8',
          timeout: 10_000,
        }).stdout.trim(),
      ).not.toBe('PONG');
      b.linkUp();
      await waitFor(
        'b to answer again',
        () => execOn(a, 'redis-cli', ['-h', b.address, '-p', '6379', 'PING']).trim() === 'PONG',
        10_000,
        100,
      );
    } finally {
      await net.close();
    }
    expect(namespaceExists(a.ns)).toBe(false);
    expect(namespaceExists(b.ns)).toBe(false);
    expect(linkExists(net.bridge)).toBe(false);
  }, 60_000);

  it('removes what a killed earlier run left: its namespaces, the processes inside them and its bridge', async () => {
    const gone = spawn(process.execPath, ['-e', '0']);
    const deadPid = await new Promise<number>((resolve) => gone.once('exit', () => resolve(gone.pid!)));
    const ns = `${NS_PREFIX}${deadPid}-stale`;
    const bridge = `pm${deadPid}b`;
    spawnSync('ip', ['netns', 'add', ns]);
    spawnSync('ip', ['link', 'add', 'name', bridge, 'type', 'bridge']);
    const sleeper = spawn('ip', ['netns', 'exec', ns, 'sleep', '300'], { stdio: 'ignore' });
    await waitFor(
      'the leftover process to run in its namespace',
      () => spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).stdout.trim() !== '',
      5000,
      50,
    );
    const exited = new Promise((resolve) => sleeper.once('exit', resolve));
    const removed = cleanStale();
    expect(removed.namespaces).toContain(ns);
    expect(removed.links).toContain(bridge);
    expect(namespaceExists(ns)).toBe(false);
    expect(linkExists(bridge)).toBe(false);
    await exited;
  }, 30_000);
});

/** Per-job engine times (fixture engine, sleep mode: a fixed time, then a 1x1 PNG). */
const FAST_MS = 100;
const SLOW_MS = 6000;
const MID_MS = 1500;
const N_SPREAD = 150;

interface Submitted {
  accepted: string[];
  refused: Array<{ status: number; code?: string }>;
}

describe.skipIf(!!noNetns)('multi-host: 2 gateways, 3 worker hosts, Redis Sentinel, S3 storage, each on its own network host', () => {
  let mh: MultiHost;
  let photo: Buffer;
  const figures: Record<string, number | string> = {};

  beforeAll(async () => {
    photo = await smallPhoto('jpeg', 96);
    mh = await startMultiHost({
      gateways: 2,
      workers: 3,
      redis: 'sentinel',
      storage: 's3',
      engines: [fixtureEngine('fast', 'sleep', FAST_MS), fixtureEngine('slow', 'sleep', SLOW_MS), fixtureEngine('mid', 'sleep', MID_MS)],
      gatewayEnv: { KNOWN_ENGINES: 'fast,slow,mid', DEFAULT_ENGINE: 'fast', JOB_ATTEMPTS: '6', JOB_BACKOFF_MS: '1000', LOG_LEVEL: 'warn' },
      // Short job locks so a cut-off host's job comes back in seconds (worker settings from the recovery work; without
      // them BullMQ's 30 s defaults apply and scenario 2 takes about a minute).
      workerEnv: { LOCK_DURATION_MS: '5000', STALLED_INTERVAL_MS: '1000' },
    });
    // Every worker host is live as seen from either gateway.
    for (const gw of mh.gateways)
      await waitFor(`${gw.url} to list three worker hosts`, async () => (await hostIds(gw.url)).length === 3, 60_000);
  }, 240_000);

  afterAll(async () => {
    if (Object.keys(figures).length) console.log(`multihost figures: ${JSON.stringify(figures)}`);
    await mh?.close();
  }, 60_000);

  const submitMany = async (n: number, engine: string, gateways: RoleHost[], concurrency = 6, pauseMs = 0): Promise<Submitted> => {
    const out: Submitted = { accepted: [], refused: [] };
    let next = 0;
    await Promise.all(
      Array.from({ length: concurrency }, async (_, lane) => {
        for (let i = next++; i < n; i = next++) {
          const gw = gateways[(i + lane) % gateways.length]!;
          const r = await submitOnce(gw.url, photo, engine);
          if (r.id) out.accepted.push(r.id);
          else out.refused.push({ status: r.status, ...(r.code ? { code: r.code } : {}) });
          if (pauseMs) await new Promise((res) => setTimeout(res, pauseMs));
        }
      }),
    );
    return out;
  };

  it(`spreads ${N_SPREAD} jobs over the three worker hosts: every host works, totals match, no duplicates`, async () => {
    const before = completions(mh.workers);
    const t0 = Date.now();
    const s = await submitMany(N_SPREAD, 'fast', mh.gateways);
    expect(s.refused).toEqual([]);
    expect(s.accepted).toHaveLength(N_SPREAD);
    const views = await settle(mh.gateways[0]!.url, s.accepted, 120_000);
    figures.spreadSeconds = Number(((Date.now() - t0) / 1000).toFixed(1));
    expect(countBy(views, (v) => v.status)).toEqual({ completed: N_SPREAD });
    const done = newCompletions(before, completions(mh.workers));
    for (const id of s.accepted) expect(done.get(id), `completions of ${id}`).toHaveLength(1);
    const perHost = countBy([...done.values()].flat(), (h) => h);
    figures.spreadPerHost = JSON.stringify(perHost);
    for (const w of mh.workers) expect(perHost[w.hostId] ?? 0, `${w.hostId} did some of the work`).toBeGreaterThan(0);
  }, 180_000);

  it('a worker host cut off the network mid-job: its job is taken over by another host after the stalled-job interval, none lost, none finished twice', async () => {
    const before = completions(mh.workers);
    const [w1] = mh.workers;
    // One slow job per host: each worker runs one engine of each profile, so three jobs occupy all three hosts.
    const s = await submitMany(3, 'slow', mh.gateways, 3);
    expect(s.accepted).toHaveLength(3);
    await waitFor(
      'all three hosts to be busy with a slow job',
      async () => {
        const hosts = await systemHosts(mh.gateways[0]!.url);
        return mh.workers.every((w) =>
          hosts.find((h) => h.hostId === w.hostId)?.processes.some((p) => p.profile === 'slow' && p.state === 'busy'),
        );
      },
      30_000,
      100,
    );
    const cutAt = Date.now();
    w1!.host.linkDown();
    try {
      // BullMQ's stalled-job checker on the other hosts moves w1's job back once its lock expires (LOCK_DURATION_MS).
      const views = await settle(mh.gateways[0]!.url, s.accepted, 120_000);
      figures.takeoverSeconds = Number(((Date.now() - cutAt) / 1000).toFixed(1));
      expect(countBy(views, (v) => v.status)).toEqual({ completed: 3 });
      const done = newCompletions(before, completions(mh.workers));
      for (const id of s.accepted) expect(done.get(id), `completions of ${id}`).toHaveLength(1);
      // w1 was busy with one of the three and cannot have finished it: another host did.
      const byHost = countBy([...done.values()].flat(), (h) => h);
      expect(byHost[w1!.hostId] ?? 0).toBe(0);
      expect((byHost[mh.workers[1]!.hostId] ?? 0) + (byHost[mh.workers[2]!.hostId] ?? 0)).toBe(3);
    } finally {
      w1!.host.linkUp();
    }
    // Back on the network, w1 rejoins; its stale attempt must not complete the job a second time.
    await waitFor('w1 to publish its state again', async () => (await hostIds(mh.gateways[0]!.url)).includes(w1!.hostId), 60_000, 200);
    const settled = await settle(mh.gateways[0]!.url, s.accepted, 10_000);
    expect(countBy(settled, (v) => v.status)).toEqual({ completed: 3 });
    const after = newCompletions(before, completions(mh.workers));
    for (const id of s.accepted) expect(after.get(id), `completions of ${id} after w1 is back`).toHaveLength(1);
    for (const id of s.accepted) {
      const res = await fetch(`${mh.gateways[1]!.url}/v1/jobs/${id}/result`);
      expect(res.status).toBe(200);
      expect((await res.arrayBuffer()).byteLength).toBeGreaterThan(0);
    }
  }, 240_000);

  it('the S3 server stopped for 10 s: running jobs fail retryably, then complete once it is back', async () => {
    const s3 = mh.s3!;
    const before = completions(mh.workers);
    const failedBefore = attemptFailures(mh.workers).length;
    const s = await submitMany(6, 'mid', mh.gateways, 6);
    expect(s.accepted).toHaveLength(6);
    await waitFor(
      'the mid jobs to be running',
      async () => {
        const hosts = await systemHosts(mh.gateways[0]!.url);
        return hosts.filter((h) => h.processes.some((p) => p.profile === 'mid' && p.state === 'busy')).length >= 2;
      },
      30_000,
      100,
    );
    const stoppedAt = Date.now();
    await s3.stop();
    // Submissions while the bytes have nowhere to go: refused with a problem (never a hang), or accepted.
    const during = await submitMany(3, 'fast', mh.gateways, 3);
    for (const r of during.refused) expect(r.status, JSON.stringify(r)).toBe(503);
    await new Promise((r) => setTimeout(r, Math.max(0, 10_000 - (Date.now() - stoppedAt))));
    await s3.start();
    const all = [...s.accepted, ...during.accepted];
    const views = await settle(mh.gateways[0]!.url, all, 120_000);
    expect(countBy(views, (v) => v.status)).toEqual({ completed: all.length });
    // The attempts that ran into the outage failed (and were retried): the running jobs could not store their results.
    const failures = attemptFailures(mh.workers).length - failedBefore;
    figures.s3OutageFailedAttempts = failures;
    expect(failures).toBeGreaterThan(0);
    expect(views.filter((v) => (v.attempts as number) > 1).length).toBeGreaterThan(0);
    const done = newCompletions(before, completions(mh.workers));
    for (const id of all) expect(done.get(id), `completions of ${id}`).toHaveLength(1);
  }, 240_000);

  it('the Redis master killed mid-stream: Sentinel promotes the replica and the system resumes by itself; no accepted job lost', async () => {
    const sentinel = mh.sentinel!;
    const oldMaster = await sentinel.currentMaster();
    const before = completions(mh.workers);
    const accepted: Array<{ id: string; at: number }> = [];
    const refused: Array<{ status: number; code?: string }> = [];
    let killAt = 0;
    let stop = false;
    // A steady stream through both gateways: 4 lanes, each a submission every ~100 ms.
    const lanes = Array.from({ length: 4 }, async (_, lane) => {
      for (let i = 0; !stop && i < 1000; i++) {
        const gw = mh.gateways[(i + lane) % 2]!;
        const at = Date.now();
        const r = await submitOnce(gw.url, photo, 'fast');
        if (r.id) accepted.push({ id: r.id, at });
        else refused.push({ status: r.status, ...(r.code ? { code: r.code } : {}) });
        await new Promise((res) => setTimeout(res, 100));
      }
    });
    try {
      await waitFor('a few accepted jobs before the kill', () => accepted.length >= 20, 30_000, 50);
      killAt = Date.now();
      await sentinel.nodeAt(oldMaster)!.kill('SIGKILL');
      const promoted = await sentinel.waitForFailover(oldMaster, 30_000);
      figures.sentinelPromotedMs = Date.now() - killAt;
      expect(promoted).not.toEqual(oldMaster);
      // Resumed: a job accepted after the kill has completed.
      await waitFor(
        'a job accepted after the kill to complete',
        async () => {
          const after = accepted.filter((a) => a.at > killAt).slice(0, 20);
          for (const a of after) {
            const v = await view(mh.gateways[1]!.url, a.id);
            if (v?.status === 'completed') return true;
          }
          return false;
        },
        60_000,
        200,
      );
      figures.failoverResumeMs = Date.now() - killAt;
      await waitFor('more accepted jobs after the failover', () => accepted.filter((a) => a.at > killAt).length >= 20, 30_000, 100);
    } finally {
      stop = true;
      await Promise.all(lanes);
    }
    // Refusals during the failover are 503 with a code (REDIS_UNAVAILABLE), never a 500 or a hang.
    for (const r of refused) expect(r.status, JSON.stringify(r)).toBe(503);
    figures.failoverRefused503 = refused.length;
    const ids = accepted.map((a) => a.id);
    const views = await settle(mh.gateways[0]!.url, ids, 120_000);
    const byStatus = countBy(views, (v) => v.status);
    figures.failoverAccepted = ids.length;
    figures.failoverLost = ids.length - (byStatus.completed ?? 0);
    // First completion logged by a worker after the kill: the time from master death to work flowing again.
    const firstAfter = Math.min(...completionTimes(mh.workers).filter((t) => t > killAt));
    if (Number.isFinite(firstAfter)) figures.failoverFirstCompletionMs = firstAfter - killAt;
    expect(byStatus).toEqual({ completed: ids.length });
    const done = newCompletions(before, completions(mh.workers));
    for (const id of ids) expect(done.get(id)?.length ?? 0, `completions of ${id}`).toBeLessThanOrEqual(1);
  }, 240_000);

  it('a gateway host dies: clients of the other gateway see nothing, and jobs it accepted still complete', async () => {
    const [gw1, gw2] = mh.gateways as [RoleHost, RoleHost];
    const early = await submitMany(10, 'fast', [gw1], 2);
    expect(early.accepted).toHaveLength(10);
    // The host dies: its process is killed and its cable pulled.
    const clientLane = submitMany(40, 'fast', [gw2], 2, 20);
    await gw1.proc.stop('SIGKILL');
    gw1.host.linkDown();
    const s = await clientLane;
    expect(s.refused).toEqual([]);
    expect(s.accepted).toHaveLength(40);
    const views = await settle(gw2.url, [...early.accepted, ...s.accepted], 120_000);
    expect(countBy(views, (v) => v.status)).toEqual({ completed: 50 });
    expect((await fetch(`${gw2.url}/readyz`)).status).toBe(200);
  }, 180_000);
});

// ---------------------------------------------------------------------------------------------------------------------

async function submitOnce(url: string, photo: Buffer, engine: string): Promise<{ id?: string; status: number; code?: string }> {
  const form = new FormData();
  form.append('engine', engine);
  form.append('image', new Blob([photo], { type: 'image/jpeg' }), 'photo.jpg');
  try {
    const res = await fetch(`${url}/v1/jobs`, { method: 'POST', body: form, signal: AbortSignal.timeout(20_000) });
    const body = (await res.json().catch(() => ({}))) as { id?: string; code?: string };
    return res.status === 202 ? { id: body.id!, status: 202 } : { status: res.status, ...(body.code ? { code: body.code } : {}) };
  } catch (err) {
    // A hang or a reset is a finding, counted as status 0.
    return { status: 0, code: (err as Error).name };
  }
}

async function view(url: string, id: string): Promise<Record<string, unknown> | undefined> {
  try {
    const res = await fetch(`${url}/v1/jobs/${id}`, { signal: AbortSignal.timeout(5000) });
    return res.status === 200 ? ((await res.json()) as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** Poll every job until it is completed or failed (or the deadline passes): returns the last view of each. */
async function settle(url: string, ids: string[], timeoutMs: number): Promise<Array<Record<string, unknown>>> {
  const last = new Map<string, Record<string, unknown>>();
  const open = new Set(ids);
  const deadline = Date.now() + timeoutMs;
  while (open.size && Date.now() < deadline) {
    const batch = [...open].slice(0, 50);
    await Promise.all(
      batch.map(async (id) => {
        const v = await view(url, id);
        if (!v) return;
        last.set(id, v);
        if (v.status === 'completed' || v.status === 'failed') open.delete(id);
      }),
    );
    if (open.size) await new Promise((r) => setTimeout(r, 250));
  }
  return ids.map((id) => last.get(id) ?? { id, status: 'unknown' });
}

async function waitFor(
  what: string,
  fn: () => Promise<boolean | undefined> | boolean | undefined,
  timeoutMs: number,
  everyMs = 250,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      if (await fn()) return;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (${(last as Error).message})` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

interface HostView {
  hostId: string;
  processes: Array<{ profile: string; state: string }>;
}

async function systemHosts(url: string): Promise<HostView[]> {
  const res = await fetch(`${url}/v1/system`, { signal: AbortSignal.timeout(5000) });
  return ((await res.json()) as { hosts: HostView[] }).hosts;
}

async function hostIds(url: string): Promise<string[]> {
  return (await systemHosts(url)).map((h) => h.hostId).sort();
}

function records(w: RoleHost): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  for (const line of w.proc.lines) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // not a log record
    }
  }
  return out;
}

/** jobId → host ids that logged "job completed" for it (a job finished twice shows two entries). */
function completions(workers: RoleHost[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const w of workers) {
    for (const r of records(w)) {
      if (r.msg !== 'job completed') continue;
      const id = String(r.jobId);
      out.set(id, [...(out.get(id) ?? []), w.hostId]);
    }
  }
  return out;
}

function newCompletions(before: Map<string, string[]>, after: Map<string, string[]>): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const [id, hosts] of after) {
    const n = before.get(id)?.length ?? 0;
    if (hosts.length > n) out.set(id, hosts.slice(n));
  }
  return out;
}

function completionTimes(workers: RoleHost[]): number[] {
  return workers.flatMap((w) =>
    records(w)
      .filter((r) => r.msg === 'job completed')
      .map((r) => Number(r.time)),
  );
}

function attemptFailures(workers: RoleHost[]): Array<Record<string, unknown>> {
  return workers.flatMap((w) => records(w).filter((r) => r.msg === 'job attempt failed'));
}

function countBy<T>(items: T[], key: (t: T) => unknown): Record<string, number> {
  const out: Record<string, number> = {};
  for (const i of items) {
    const k = String(key(i));
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}
