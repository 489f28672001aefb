/**
 * Fault injection against the real system: a private Redis with AOF, the gateway and two workers as child processes,
 * a fixture engine. Faults: SIGKILL of an engine, of a worker (replaced afterwards, as a supervisor would), of the
 * gateway in the middle of an upload (the client retries with the same Idempotency-Key), of Redis (restarted on its
 * AOF), and SIGSTOP of a worker past its lock. Each fault reports accepted / completed / failed / lost / duplicated
 * jobs and the time to recover. `npm run chaos` runs the full counts; test/chaos.test.ts a CI-sized run.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import sharp from 'sharp';
import { KEY_PREFIX, listHosts, queueName, redisOptions } from '@photoenhance/queue';
import { completions, lockHolder } from '../test/support/chaos.js';
import { running, startAofRedis, startGatewayProcess, type FaultRedis, type GatewayProcess } from '../test/support/faults.js';
import { fixtureEngine, startWorker, until, type RunningWorker } from '../test/support/stack.js';
import { freePort } from '../apps/cli/test/launch.js';
import type { Row } from './spine.js';

export type FaultKind = 'engine-kill' | 'worker-kill' | 'gateway-kill' | 'redis-kill' | 'worker-stop';

export interface ChaosOptions {
  /** How many times each fault is injected. */
  counts: Record<FaultKind, number>;
  /** Jobs submitted around each injection. */
  jobsPerFault: number;
  /** The fixture engine's time per job. */
  engineDelayMs: number;
  /** Worker settings (LOCK_DURATION_MS …); defaults when empty. */
  workerEnv?: Record<string, string>;
  /** How long a SIGSTOPped worker stays stopped, past its lock (default lock + 1 s). */
  stopMs?: number;
  log?: (line: string) => void;
}

export interface FaultResult {
  fault: FaultKind;
  injected: number;
  accepted: number;
  completed: number;
  failed: number;
  /** Accepted, then gone or never finished. */
  lost: number;
  /** Finished more than once, or one Idempotency-Key that made two jobs. */
  duplicated: number;
  /** Per injection: from the fault to the affected work running again (see FAULTS). */
  recoverMs: number[];
  /** Engines of a killed worker still running 1.5 s after it died. */
  orphans: number;
}

const ENGINE = 'chaos';
const LABEL: Record<FaultKind, string> = {
  'engine-kill': 'engine kill -9',
  'worker-kill': 'worker kill -9',
  'gateway-kill': 'gateway kill -9 mid-upload',
  'redis-kill': 'Redis kill -9 (AOF)',
  'worker-stop': 'worker SIGSTOP past its lock',
};
/** What "recover" means per fault. */
export const FAULTS: Record<FaultKind, string> = {
  'engine-kill': 'kill → the next job finishes',
  'worker-kill': "kill → the dead worker's job runs on another worker",
  'gateway-kill': 'kill → the retried upload (same Idempotency-Key) is accepted by the restarted gateway',
  'redis-kill': 'kill → Redis back on its AOF and the next job finishes',
  'worker-stop': "SIGSTOP → the frozen worker's job runs on another worker",
};

/** The fixture engine process a worker started (its direct child), if running. */
function engineOf(workerPid: number): number | undefined {
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === workerPid && readFileSync(`/proc/${name}/cmdline`, 'utf8').includes('fixture-engine')) return Number(name);
    } catch {
      // gone meanwhile
    }
  }
  return undefined;
}

export async function runChaos(opts: ChaosOptions): Promise<FaultResult[]> {
  const log = opts.log ?? ((l: string) => console.log(l));
  const workerEnv = opts.workerEnv ?? {};
  const lockMs = Number(workerEnv.LOCK_DURATION_MS ?? 10_000);
  const redis: FaultRedis = await startAofRedis();
  const storageDir = mkdtempSync(join(tmpdir(), 'pe-chaos-'));
  const cfg = join(storageDir, 'worker.json');
  writeFileSync(cfg, JSON.stringify({ engines: [fixtureEngine(ENGINE, 'sleep', opts.engineDelayMs)] }));
  const port = await freePort();
  const gwEnv = { REDIS_URL: redis.url, STORAGE_DIR: storageDir, KNOWN_ENGINES: ENGINE, LOG_LEVEL: 'warn' };
  let gateway: GatewayProcess = await startGatewayProcess(gwEnv, port);
  const url = gateway.url;
  const workers: RunningWorker[] = [];
  const addWorker = async (): Promise<RunningWorker> => {
    const w = await startWorker({
      REDIS_URL: redis.url,
      STORAGE_DIR: storageDir,
      WORKER_CONFIG: cfg,
      LOG_LEVEL: 'warn',
      HEARTBEAT_MS: '2000',
      ...workerEnv,
    });
    workers.push(w);
    await until('the worker to publish its host state', async () => (await listHosts(client)).some((h) => h.pid === w.pid), 60_000, 100);
    return w;
  };
  const client = redis.client();
  const queue = new Queue(queueName(ENGINE), {
    connection: { ...redisOptions(redis.url), maxRetriesPerRequest: null },
    prefix: KEY_PREFIX,
  });
  queue.on('error', () => undefined);
  await Promise.all([addWorker(), addWorker()]);
  const image = await sharp({ create: { width: 64, height: 48, channels: 3, background: '#5a7' } })
    .png()
    .toBuffer();

  /** Idempotency-Key → job ids the gateway answered with (more than one is a duplicate). */
  const byKey = new Map<string, Set<string>>();
  const usedKeys: string[] = [];
  let keySeq = 0;
  const form = (): FormData => {
    const f = new FormData();
    f.append('engine', ENGINE);
    f.append('format', 'png');
    f.append('image', new Blob([image], { type: 'image/png' }), 'chaos.png');
    return f;
  };
  /** Submit until accepted, resending with the same Idempotency-Key through 503s, 429s and a dead gateway. */
  const submit = async (key = `chaos-${process.pid}-${++keySeq}`): Promise<string> => {
    if (!usedKeys.includes(key)) usedKeys.push(key);
    const deadline = Date.now() + 120_000;
    for (let delay = 100; ; delay = Math.min(1000, delay * 2)) {
      try {
        const res = await fetch(`${url}/v1/jobs`, {
          method: 'POST',
          body: form(),
          headers: { 'Idempotency-Key': key },
          signal: AbortSignal.timeout(10_000),
        });
        const body = (await res.json()) as { id?: string };
        if ((res.status === 202 || res.status === 200) && body.id) {
          const ids = byKey.get(key) ?? new Set<string>();
          ids.add(body.id);
          byKey.set(key, ids);
          return body.id;
        }
        if (res.status !== 503 && res.status !== 429) throw new Error(`submission answered ${res.status}: ${JSON.stringify(body)}`);
      } catch (err) {
        if ((err as Error).message.startsWith('submission answered')) throw err;
      }
      if (Date.now() > deadline) throw new Error(`submission ${key} not accepted within 120 s`);
      await new Promise((r) => setTimeout(r, delay));
    }
  };
  const submitMany = (n: number): Promise<string[]> => Promise.all(Array.from({ length: n }, () => submit()));
  const completedCount = async (): Promise<number> => [...(await completions(client, ENGINE)).values()].reduce((a, b) => a + b, 0);
  /**
   * An active job of `ids` whose lock a worker of ours holds. Should the round's jobs all be done before the fault
   * (a slow client on a loaded machine), one more is submitted into the round (`ids` grows).
   */
  const heldJob = (ids: string[]): Promise<{ id: string; token: string; victim: RunningWorker }> =>
    until(
      'a job of this round to be running on a worker',
      async () => {
        for (const id of ids) {
          const h = await lockHolder(client, ENGINE, id);
          const victim = h && workers.find((w) => w.pid === h.pid && w.proc.exitCode === null && w.proc.signalCode === null);
          if (h && victim) return { id, token: h.token, victim };
        }
        const states = await Promise.all(ids.map((id) => queue.getJobState(id)));
        if (states.every((st) => st === 'completed' || st === 'failed')) ids.push(await submit());
        return undefined;
      },
      60_000,
      25,
    );
  const rerun = (id: string, token: string, victimPid: number): Promise<boolean> =>
    until(
      'the job to run again on another worker',
      async () => {
        const h = await lockHolder(client, ENGINE, id);
        if (h && h.token !== token && h.pid !== victimPid) return true;
        return (await queue.getJobState(id)) === 'completed' ? true : undefined;
      },
      60_000,
      25,
    );
  const nextCompletion = async (after: number): Promise<void> => {
    await until('the next job to finish', async () => (await completedCount()) > after, 60_000, 25);
  };

  let orphans = 0;
  const inject: Record<FaultKind, (ids: string[]) => Promise<number>> = {
    'engine-kill': async (ids) => {
      // The engine running a job of this round: the fixture child of the worker holding that job's lock.
      const pid = await until(
        'an engine running a job of this round',
        async () => {
          const { victim } = await heldJob(ids);
          return engineOf(victim.pid);
        },
        60_000,
        25,
      );
      const before = await completedCount();
      process.kill(pid, 'SIGKILL');
      const t0 = Date.now();
      await nextCompletion(before);
      return Date.now() - t0;
    },
    'worker-kill': async (ids) => {
      const { id, token, victim } = await heldJob(ids);
      const engines = (await listHosts(client))
        .filter((h) => h.pid === victim.pid)
        .flatMap((h) => h.processes.map((p) => p.pid))
        .filter((p): p is number => !!p);
      victim.proc.kill('SIGKILL');
      const t0 = Date.now();
      // Engines die with their worker (parent-death signal): none may keep computing.
      await until("the dead worker's engines to be gone", () => engines.every((p) => !running(p)), 1_500, 20).catch(() => {
        orphans += engines.filter(running).length;
        for (const p of engines.filter(running)) process.kill(p, 'SIGKILL');
      });
      await rerun(id, token, victim.pid);
      const ms = Date.now() - t0;
      await victim.stop();
      workers.splice(workers.indexOf(victim), 1);
      await addWorker(); // as a supervisor would
      return ms;
    },
    'gateway-kill': async () => {
      const key = `chaos-upload-${process.pid}-${++keySeq}`;
      // A multipart body whose second half never comes until the gateway is gone: the kill lands mid-upload.
      const boundary = '----pechaos';
      const head = Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="engine"\r\n\r\n${ENGINE}\r\n--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="up.png"\r\nContent-Type: image/png\r\n\r\n`,
      );
      let sent!: () => void;
      const halfSent = new Promise<void>((r) => (sent = r));
      const body = new ReadableStream<Uint8Array>({
        start(c) {
          c.enqueue(new Uint8Array(Buffer.concat([head, image.subarray(0, image.length >> 1)])));
          sent();
        },
      });
      const upload = fetch(`${url}/v1/jobs`, {
        method: 'POST',
        body,
        headers: { 'Content-Type': `multipart/form-data; boundary=${boundary}`, 'Idempotency-Key': key },
        duplex: 'half',
      } as RequestInit).then(
        (r) => r.status,
        () => 'failed' as const,
      );
      await halfSent;
      await new Promise((r) => setTimeout(r, 100)); // let the gateway start reading the part
      await gateway.kill('SIGKILL');
      const t0 = Date.now();
      const first = await upload;
      if (first !== 'failed') throw new Error(`the half upload got an answer (${first}) before the kill`);
      const retried = submit(key); // retries through connection refusals until the new gateway takes it
      gateway = await startGatewayProcess(gwEnv, port);
      await retried;
      return Date.now() - t0;
    },
    'redis-kill': async (ids) => {
      await heldJob(ids);
      const before = await completedCount();
      await redis.stop('SIGKILL');
      const t0 = Date.now();
      await redis.start();
      await nextCompletion(before);
      return Date.now() - t0;
    },
    'worker-stop': async (ids) => {
      const { id, token, victim } = await heldJob(ids);
      victim.proc.kill('SIGSTOP');
      const t0 = Date.now();
      await rerun(id, token, victim.pid);
      const ms = Date.now() - t0;
      await until('the stop to outlast the lock', () => Date.now() - t0 > (opts.stopMs ?? lockMs + 1000), 120_000, 100);
      victim.proc.kill('SIGCONT');
      return ms;
    },
  };

  const results: FaultResult[] = [];
  const rounds: Array<{ fault: FaultKind; ids: string[]; recoverMs: number[]; keys: string[] }> = [];
  try {
    for (const fault of Object.keys(opts.counts) as FaultKind[]) {
      const round = { fault, ids: [] as string[], recoverMs: [] as number[], keys: [] as string[] };
      rounds.push(round);
      for (let i = 0; i < opts.counts[fault]; i++) {
        const firstKey = usedKeys.length;
        const ids = await submitMany(opts.jobsPerFault);
        const ms = await inject[fault](ids);
        round.ids.push(...ids);
        round.recoverMs.push(ms);
        round.keys.push(...usedKeys.slice(firstKey));
        log(`chaos: ${LABEL[fault]} #${i + 1}: recovered in ${ms} ms`);
      }
    }
    // Every accepted job must end; a job that never does is lost.
    const all = [...byKey.values()].flatMap((s) => [...s]);
    const deadline = Date.now() + 180_000;
    const states = new Map<string, string>();
    for (const id of all) {
      for (;;) {
        const st = await queue.getJobState(id);
        if (st === 'completed' || st === 'failed' || st === 'unknown' || Date.now() > deadline) {
          states.set(id, st);
          break;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    const done = await completions(client, ENGINE);
    for (const r of rounds) {
      const ids = new Set([...r.ids, ...r.keys.flatMap((k) => [...(byKey.get(k) ?? [])])]);
      const st = [...ids].map((id) => states.get(id));
      results.push({
        fault: r.fault,
        injected: r.recoverMs.length,
        accepted: ids.size,
        completed: st.filter((s) => s === 'completed').length,
        failed: st.filter((s) => s === 'failed').length,
        lost: st.filter((s) => s !== 'completed' && s !== 'failed').length,
        duplicated: [...ids].filter((id) => (done.get(id) ?? 0) > 1).length + r.keys.filter((k) => (byKey.get(k)?.size ?? 0) > 1).length,
        recoverMs: r.recoverMs,
        orphans: r.fault === 'worker-kill' ? orphans : 0,
      });
    }
  } finally {
    for (const w of workers) {
      w.proc.kill('SIGCONT');
      await w.stop('SIGKILL');
    }
    // A worker killed outright leaves its engines to the parent-death signal: none may survive.
    await gateway.kill('SIGTERM');
    await queue.close().catch(() => undefined);
    await redis.close();
    rmSync(storageDir, { recursive: true, force: true });
  }
  return results;
}

export function printChaos(results: FaultResult[], log: (l: string) => void = (l) => console.log(l)): void {
  log(
    '| fault | injected | accepted | completed | failed | lost | duplicated | orphaned engines | recover max (ms) | recover median (ms) |',
  );
  log('|---|---|---|---|---|---|---|---|---|---|');
  for (const r of results) {
    const sorted = [...r.recoverMs].sort((a, b) => a - b);
    log(
      `| ${LABEL[r.fault]} | ${r.injected} | ${r.accepted} | ${r.completed} | ${r.failed} | ${r.lost} | ${r.duplicated} | ${r.orphans} | ${sorted.at(-1) ?? '-'} | ${sorted[sorted.length >> 1] ?? '-'} |`,
    );
  }
}

/** `npm run chaos` (bench/run.ts chaos): the counts with the default worker settings. */
export async function benchChaos({ quick }: { quick: boolean }): Promise<Row[]> {
  const results = await runChaos({
    counts: quick
      ? { 'engine-kill': 2, 'worker-kill': 1, 'gateway-kill': 1, 'redis-kill': 1, 'worker-stop': 1 }
      : { 'engine-kill': 10, 'worker-kill': 5, 'gateway-kill': 5, 'redis-kill': 3, 'worker-stop': 2 },
    jobsPerFault: quick ? 3 : 4,
    engineDelayMs: 1500,
  });
  printChaos(results);
  return results.flatMap((r) => {
    const worst = Math.max(...r.recoverMs);
    const counts = `injected ${r.injected}, accepted ${r.accepted}, completed ${r.completed}, failed ${r.failed}, lost ${r.lost}, duplicated ${r.duplicated}, orphaned engines ${r.orphans}`;
    return [
      {
        section: 'chaos',
        metric: `${LABEL[r.fault]}: lost + duplicated`,
        value: r.lost + r.duplicated,
        unit: 'jobs',
        goal: '0',
        note: counts,
      },
      {
        section: 'chaos',
        metric: `${LABEL[r.fault]}: time to recover (worst)`,
        value: worst,
        unit: 'ms',
        goal: r.fault.startsWith('worker') ? '<= 15000' : '',
        note: FAULTS[r.fault],
      },
    ];
  });
}
