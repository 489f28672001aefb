import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

/**
 * Separate network hosts on one machine, for the multi-host suite and `npm run bench -- scale`: one network namespace
 * per host, each joined by a veth pair to a bridge, on a private test subnet (10.254.N.0/24) that exists only here.
 *
 * The bridge lives in the root namespace with the subnet's .1 address, so the test process itself is a client on that
 * network (it reaches every host; nothing else routes there). Namespaces have no default route: every address a
 * component uses is inside this subnet.
 *
 * Everything is named with a prefix and the creating process's pid (namespace `pemh<pid>-<host>`, links `pm<pid>…`), so
 * a run killed outright leaves names the next run recognises and removes (cleanStale) together with any process still
 * inside them. close() removes everything this run made, also after a failure; a process exit hook does the same as a
 * last resort.
 */

export const NS_PREFIX = 'pemh';
const LINK_PREFIX = 'pm';
const IP_TIMEOUT_MS = 10_000;

function ip(args: string[], opts: { allowFail?: boolean } = {}): string {
  const r = spawnSync('ip', args, { encoding: 'utf8', timeout: IP_TIMEOUT_MS });
  if (r.status !== 0 && !opts.allowFail)
    throw new Error(`ip ${args.join(' ')} failed (${r.status ?? r.signal}): ${r.stderr || r.error?.message}`);
  return r.stdout ?? '';
}

/** Why the multi-host suite cannot run here, or undefined when it can (root, `ip`, namespaces and bridges allowed). */
export function netnsUnavailable(): string | undefined {
  if (process.platform !== 'linux') return 'network namespaces are Linux only';
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return 'needs root (ip netns add); CI runs it as root';
  const probe = spawnSync('ip', ['-V'], { encoding: 'utf8', timeout: IP_TIMEOUT_MS });
  if (probe.error || probe.status !== 0) return 'needs the `ip` command (iproute2: apt-get install -y iproute2)';
  if (spawnSync('redis-server', ['--version'], { timeout: IP_TIMEOUT_MS }).status !== 0)
    return 'needs redis-server (apt-get install -y redis-server)';
  const name = `${NS_PREFIX}${process.pid}-probe`;
  const add = spawnSync('ip', ['netns', 'add', name], { encoding: 'utf8', timeout: IP_TIMEOUT_MS });
  if (add.status !== 0) return `cannot create a network namespace here (${add.stderr.trim()})`;
  spawnSync('ip', ['netns', 'del', name], { timeout: IP_TIMEOUT_MS });
  return undefined;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Kill every process inside a namespace (SIGKILL): a namespace removed with processes in it leaves them running. */
function killInside(ns: string): void {
  const pids = ip(['netns', 'pids', ns], { allowFail: true }).split(/\s+/).filter(Boolean).map(Number);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

function removeNamespaces(names: string[], links: string[]): void {
  for (const ns of names) killInside(ns);
  // Deleting a namespace removes its veth end, and with it the peer in the root namespace.
  for (const ns of names) ip(['netns', 'del', ns], { allowFail: true });
  for (const link of links) ip(['link', 'del', link], { allowFail: true });
}

/** Remove what earlier runs left behind: namespaces and links carrying our prefix and the pid of a process now gone. */
export function cleanStale(): { namespaces: string[]; links: string[] } {
  const nsRe = new RegExp(`^${NS_PREFIX}(\\d+)(?:x\\d+)?-\\S+`);
  const linkRe = new RegExp(`^${LINK_PREFIX}(\\d+)(?:x\\d+)?[bh]\\d*$`);
  const namespaces = ip(['netns', 'list'], { allowFail: true })
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((n) => {
      const m = nsRe.exec(n);
      return !!m && !alive(Number(m[1]));
    });
  const links = ip(['-o', 'link', 'show'], { allowFail: true })
    .split('\n')
    .map((l) => /^\d+:\s+([^:@\s]+)/.exec(l)?.[1] ?? '')
    .filter((n) => {
      const m = linkRe.exec(n);
      return !!m && !alive(Number(m[1]));
    });
  removeNamespaces(namespaces, links);
  return { namespaces, links };
}

let networkSeq = 0;

/** A 10.254.N.0/24 no route of this machine uses yet (concurrent runs each get their own). */
function freeSubnet(): number {
  const used = ip(['-4', 'route', 'show'], { allowFail: true }) + ip(['-4', '-o', 'addr', 'show'], { allowFail: true });
  const start = 1 + (process.pid % 200);
  for (let i = 0; i < 250; i++) {
    const n = ((start + i) % 250) + 1;
    if (!used.includes(`10.254.${n}.`)) return n;
  }
  throw new Error('no free 10.254.N.0/24 test subnet: remove leftover test networks (ip route | grep 10.254)');
}

export interface NetHost {
  name: string;
  /** Namespace name. */
  ns: string;
  /** Its address on the test subnet. */
  address: string;
  /** Command prefix that runs a program on this host. */
  prefix: string[];
  /** Cut the host off the network (its cable pulled): the veth end on the bridge goes down. */
  linkDown(): void;
  linkUp(): void;
  /** Start a program on this host (argument array); its output is kept and, with `echo`, printed with the host's name. */
  spawn(command: string, args: string[], opts?: { env?: NodeJS.ProcessEnv; cwd?: string; label?: string }): HostProcess;
}

export interface HostProcess {
  label: string;
  proc: ChildProcess;
  lines: string[];
  /** Resolves with the first line matching (already printed or yet to come); rejects on exit or after timeoutMs. */
  waitForLine(re: RegExp, timeoutMs: number): Promise<string>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  running(): boolean;
  /** Signal it and wait for the exit; SIGKILL after graceMs. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface TestNetwork {
  /** e.g. 10.254.37 */
  subnet: string;
  bridge: string;
  /** The test process's own address on the bridge. */
  clientAddress: string;
  hosts: Record<string, NetHost>;
  host(name: string): NetHost;
  /** Stop every process started through a host, remove the namespaces, veths and the bridge. Idempotent. */
  close(): Promise<void>;
}

/**
 * Build the network: one namespace per name (`hosts`), addresses .10, .11, … in order. Fails (after removing what it
 * made) when a step fails.
 */
export async function createNetwork(hostNames: string[], opts: { echo?: boolean } = {}): Promise<TestNetwork> {
  cleanStale();
  const n = freeSubnet();
  const subnet = `10.254.${n}`;
  // Two networks of one process (test files sharing a runner process) must not collide: a sequence number per network.
  const seq = ++networkSeq % 10;
  const tag = `${LINK_PREFIX}${process.pid}x${seq}`;
  const bridge = `${tag}b`;
  const madeNs: string[] = [];
  const madeLinks: string[] = [];
  const procs = new Set<HostProcess>();
  let closed = false;

  const teardown = (): void => {
    if (closed) return;
    closed = true;
    for (const p of procs) if (p.running()) p.proc.kill('SIGKILL');
    removeNamespaces(madeNs, [...madeLinks].reverse());
  };
  // Last resort when the test runner exits without afterAll (a crash): synchronous, like everything in teardown.
  process.once('exit', teardown);

  const hosts: Record<string, NetHost> = {};
  try {
    ip(['link', 'add', 'name', bridge, 'type', 'bridge']);
    madeLinks.push(bridge);
    ip(['addr', 'add', `${subnet}.1/24`, 'dev', bridge]);
    ip(['link', 'set', bridge, 'up']);
    hostNames.forEach((name, i) => {
      if (!/^[a-z0-9]{1,12}$/.test(name)) throw new Error(`host name ${JSON.stringify(name)}: 1-12 of a-z0-9`);
      const ns = `${NS_PREFIX}${process.pid}x${seq}-${name}`;
      const outside = `${tag}h${i}`;
      const inside = `${tag}i${i}`;
      const address = `${subnet}.${10 + i}`;
      ip(['netns', 'add', ns]);
      madeNs.push(ns);
      ip(['link', 'add', outside, 'type', 'veth', 'peer', 'name', inside]);
      madeLinks.push(outside);
      ip(['link', 'set', inside, 'netns', ns]);
      ip(['link', 'set', outside, 'master', bridge]);
      ip(['link', 'set', outside, 'up']);
      ip(['netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up']);
      ip(['netns', 'exec', ns, 'ip', 'link', 'set', inside, 'name', 'eth0']);
      ip(['netns', 'exec', ns, 'ip', 'addr', 'add', `${address}/24`, 'dev', 'eth0']);
      ip(['netns', 'exec', ns, 'ip', 'link', 'set', 'eth0', 'up']);
      const prefix = ['ip', 'netns', 'exec', ns];
      hosts[name] = {
        name,
        ns,
        address,
        prefix,
        linkDown: () => void ip(['link', 'set', outside, 'down']),
        linkUp: () => void ip(['link', 'set', outside, 'up']),
        spawn(command, args, o = {}) {
          const p = hostProcess(
            o.label ?? `${name}:${command.split('/').pop()}`,
            spawn('ip', ['netns', 'exec', ns, command, ...args], {
              env: o.env ?? process.env,
              cwd: o.cwd,
              stdio: ['ignore', 'pipe', 'pipe'],
            }),
            opts.echo ?? false,
          );
          procs.add(p);
          return p;
        },
      };
    });
  } catch (err) {
    teardown();
    process.removeListener('exit', teardown);
    throw err;
  }

  return {
    subnet,
    bridge,
    clientAddress: `${subnet}.1`,
    hosts,
    host(name) {
      const h = hosts[name];
      if (!h) throw new Error(`no host ${name} in this test network`);
      return h;
    },
    async close() {
      // Ask politely first (SIGTERM, 5 s), so servers flush and close; then remove everything.
      await Promise.all([...procs].map((p) => p.stop('SIGTERM', 5000)));
      teardown();
      process.removeListener('exit', teardown);
    },
  };
}

function hostProcess(label: string, proc: ChildProcess, echo: boolean): HostProcess {
  const lines: string[] = [];
  const waiters = new Set<() => void>();
  let info: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const onLine = (line: string): void => {
    lines.push(line);
    if (lines.length > 20_000) lines.splice(0, 10_000);
    if (echo) process.stderr.write(`${label} | ${line}\n`);
    for (const w of waiters) w();
  };
  createInterface({ input: proc.stdout! }).on('line', onLine);
  createInterface({ input: proc.stderr! }).on('line', onLine);
  proc.on('error', (e) => onLine(`spawn error: ${e.message}`));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.once('exit', (code, signal) => {
      info = { code, signal };
      resolve(info);
      for (const w of waiters) w();
    }),
  );
  const running = (): boolean => info === undefined && proc.exitCode === null && proc.signalCode === null;
  return {
    label,
    proc,
    lines,
    exited,
    running,
    waitForLine: (re, timeoutMs) =>
      new Promise((resolve, reject) => {
        let from = 0;
        const check = (): void => {
          for (; from < lines.length; from++) {
            if (re.test(lines[from]!)) {
              finish(undefined, lines[from]);
              return;
            }
          }
          if (info)
            finish(
              new Error(`${label} exited (${info.code ?? info.signal}) before printing ${re}; last lines:\n${lines.slice(-15).join('\n')}`),
            );
        };
        const timer = setTimeout(
          () => finish(new Error(`${label} did not print ${re} within ${timeoutMs} ms; last lines:\n${lines.slice(-15).join('\n')}`)),
          timeoutMs,
        );
        const finish = (err: Error | undefined, line?: string): void => {
          clearTimeout(timer);
          waiters.delete(check);
          if (err) reject(err);
          else resolve(line!);
        };
        waiters.add(check);
        check();
      }),
    async stop(signal = 'SIGTERM', graceMs = 10_000) {
      if (!running()) return info ?? { code: proc.exitCode, signal: proc.signalCode };
      proc.kill(signal);
      const t = setTimeout(() => proc.kill('SIGKILL'), graceMs);
      const r = await exited;
      clearTimeout(t);
      return r;
    },
  };
}

/** For the stale-cleanup test: whether a namespace of this name exists. */
export function namespaceExists(ns: string): boolean {
  return ip(['netns', 'list'], { allowFail: true })
    .split('\n')
    .some((l) => l.trim().split(/\s+/)[0] === ns);
}

export function linkExists(name: string): boolean {
  return spawnSync('ip', ['link', 'show', name], { timeout: IP_TIMEOUT_MS }).status === 0;
}

/** Run a command on a host and return its stdout (bounded). */
export function execOn(host: NetHost, command: string, args: string[]): string {
  return execFileSync('ip', ['netns', 'exec', host.ns, command, ...args], { encoding: 'utf8', timeout: IP_TIMEOUT_MS });
}

// ---------------------------------------------------------------------------------------------------------------------
// The whole system spread over hosts: Redis (one node, or master + replica + three sentinels), an S3-compatible server
// (s3rver) or a shared folder, gateways and worker hosts, each component in its own namespace, each app started with
// its role command (`photoenhance gateway|worker`), configured by environment only.

export interface MultiHostOptions {
  gateways: number;
  workers: number;
  redis: 'single' | 'sentinel';
  /** s3: every host reaches the bytes over the network and no folder is shared; shared-dir: one folder (same machine). */
  storage: 's3' | 'shared-dir';
  /** Worker engine profiles (the WORKER_CONFIG file's `engines`). */
  engines: unknown[];
  workerEnv?: Record<string, string>;
  gatewayEnv?: Record<string, string>;
  /** Print every process's output with its host name (MULTIHOST_ECHO=1). */
  echo?: boolean;
  /** Create the worker hosts but start no worker (call restart() on each later). */
  deferWorkers?: boolean;
}

export interface RoleHost {
  host: NetHost;
  /** For a gateway: http://ADDRESS:8080. */
  url: string;
  hostId: string;
  dir: string;
  env: NodeJS.ProcessEnv;
  /** The running role (undefined for a deferred worker not started yet). */
  proc: HostProcess;
  /** Start the role again (same env) after a stop; resolves when it is ready. */
  restart(): Promise<void>;
}

export interface S3Server {
  host: NetHost;
  endpoint: string;
  bucket: string;
  dir: string;
  running(): boolean;
  stop(): Promise<void>;
  start(): Promise<void>;
}

export interface MultiHost {
  net: TestNetwork;
  /** What every component gets to reach Redis and storage. */
  env: Record<string, string>;
  sentinel?: import('./redis-sentinel.js').SentinelRedis;
  s3?: S3Server;
  gateways: RoleHost[];
  workers: RoleHost[];
  close(): Promise<void>;
}

const S3_PORT = 4568;
const GATEWAY_PORT = 8080;

export async function startMultiHost(o: MultiHostOptions): Promise<MultiHost> {
  const { mkdtempSync, rmSync, writeFileSync, mkdirSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { fileURLToPath } = await import('node:url');
  const repo = fileURLToPath(new URL('../../', import.meta.url));
  const bin = join(repo, 'apps/cli/bin/photoenhance.js');
  const echo = o.echo ?? process.env.MULTIHOST_ECHO === '1';

  const names = [
    'redis1',
    ...(o.redis === 'sentinel' ? ['redis2', 'sent1', 'sent2', 'sent3'] : []),
    ...(o.storage === 's3' ? ['s3'] : []),
    ...Array.from({ length: o.gateways }, (_, i) => `gw${i + 1}`),
    ...Array.from({ length: o.workers }, (_, i) => `w${i + 1}`),
  ];
  const net = await createNetwork(names, { echo });
  const root = mkdtempSync(join(tmpdir(), 'pe-multihost-'));
  const cleanups: Array<() => Promise<void> | void> = [() => rmSync(root, { recursive: true, force: true })];
  const close = async (): Promise<void> => {
    // Apps first (they talk to Redis and S3 while stopping), then the servers, then the network.
    for (const r of [...result.workers, ...result.gateways]) await r.proc?.stop('SIGTERM', 5000);
    for (const c of cleanups.splice(0).reverse()) await c();
    await net.close();
  };
  const result: MultiHost = { net, env: {}, gateways: [], workers: [], close };
  try {
    const env: Record<string, string> = {};
    if (o.redis === 'sentinel') {
      const { startSentinelRedis } = await import('./redis-sentinel.js');
      const at = (h: string, port: number) => ({ host: net.host(h).address, prefix: net.host(h).prefix, port });
      const sentinel = await startSentinelRedis({
        masterName: 'pe-multihost',
        replicas: 1,
        sentinels: 3,
        downAfterMs: 1000,
        failoverTimeoutMs: 5000,
        master: at('redis1', 6379),
        replicaPlacement: [at('redis2', 6379)],
        sentinelPlacement: [at('sent1', 26379), at('sent2', 26379), at('sent3', 26379)],
      });
      cleanups.push(() => sentinel.close());
      result.sentinel = sentinel;
      Object.assign(env, sentinel.env);
    } else {
      const h = net.host('redis1');
      const p = h.spawn(
        'redis-server',
        [
          '--bind',
          h.address,
          '--port',
          '6379',
          '--protected-mode',
          'no',
          '--save',
          '',
          '--appendonly',
          'no',
          '--maxmemory-policy',
          'noeviction',
          '--dir',
          root,
        ],
        { label: 'redis1:redis' },
      );
      await p.waitForLine(/Ready to accept connections/, 10_000);
      env.REDIS_URL = `redis://${h.address}:6379/0`;
    }

    if (o.storage === 's3') {
      const h = net.host('s3');
      const dir = join(root, 's3');
      mkdirSync(dir, { recursive: true });
      const bucket = 'pe-multihost';
      let proc: HostProcess | undefined;
      const s3: S3Server = {
        host: h,
        endpoint: `http://${h.address}:${S3_PORT}`,
        bucket,
        dir,
        running: () => !!proc?.running(),
        async start() {
          if (proc?.running()) return;
          proc = h.spawn(
            process.execPath,
            [
              join(repo, 'node_modules/s3rver/bin/s3rver.js'),
              '-d',
              dir,
              '-a',
              h.address,
              '-p',
              String(S3_PORT),
              '--silent',
              '--configure-bucket',
              bucket,
            ],
            { label: 's3:s3rver', cwd: repo },
          );
          await proc.waitForLine(/S3rver listening/, 20_000);
        },
        async stop() {
          await proc?.stop('SIGKILL', 1000);
        },
      };
      await s3.start();
      cleanups.push(() => s3.stop());
      result.s3 = s3;
      Object.assign(env, {
        STORAGE_URL: `s3://${bucket}/jobs`,
        S3_ENDPOINT: s3.endpoint,
        S3_FORCE_PATH_STYLE: 'true',
        AWS_REGION: 'us-east-1',
        AWS_ACCESS_KEY_ID: 'S3RVER',
        AWS_SECRET_ACCESS_KEY: 'S3RVER',
      });
    } else {
      env.STORAGE_DIR = join(root, 'shared-storage');
    }
    result.env = env;

    const base = (): NodeJS.ProcessEnv => {
      // Nothing from the test runner's environment that would point a component elsewhere.
      const e: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, NODE_ENV: 'production', LOG_LEVEL: 'info' };
      return { ...e, ...env };
    };
    const startRole = async (role: 'gateway' | 'worker', h: NetHost, extra: Record<string, string>): Promise<RoleHost> => {
      const dir = join(root, h.name);
      mkdirSync(dir, { recursive: true });
      const roleEnv: NodeJS.ProcessEnv = { ...base(), PHOTOENHANCE_VAR_DIR: dir, TMPDIR: dir, ...extra };
      const r: RoleHost = {
        host: h,
        url: `http://${h.address}:${GATEWAY_PORT}`,
        hostId: extra.HOST_ID ?? h.name,
        dir,
        env: roleEnv,
        proc: undefined as unknown as HostProcess,
        async restart() {
          if (r.proc?.running()) await r.proc.stop('SIGTERM', 10_000);
          const proc = h.spawn(process.execPath, [bin, role], { env: roleEnv, cwd: repo, label: `${h.name}:${role}` });
          r.proc = proc;
          if (role === 'worker') return void (await proc.waitForLine(/"msg":"worker ready"/, 120_000));
          // The gateway logs at the level it is given: ask it over the network instead.
          const deadline = Date.now() + 120_000;
          for (;;) {
            if (!proc.running()) throw new Error(`${h.name}:gateway exited at start; last lines:\n${proc.lines.slice(-15).join('\n')}`);
            const ok = await fetch(`${r.url}/healthz`, { signal: AbortSignal.timeout(2000) }).then(
              (res) => res.status === 200,
              () => false,
            );
            if (ok) return;
            if (Date.now() > deadline)
              throw new Error(
                `${h.name}:gateway did not answer ${r.url}/healthz within 120 s; last lines:\n${proc.lines.slice(-15).join('\n')}`,
              );
            await new Promise((res) => setTimeout(res, 200));
          }
        },
      };
      return r;
    };
    for (let i = 0; i < o.gateways; i++) {
      const h = net.host(`gw${i + 1}`);
      result.gateways.push(await startRole('gateway', h, { HOST: h.address, PORT: String(GATEWAY_PORT), ...o.gatewayEnv }));
    }
    for (let i = 0; i < o.workers; i++) {
      const h = net.host(`w${i + 1}`);
      const cfg = join(root, h.name, 'worker.json');
      mkdirSync(join(root, h.name), { recursive: true });
      writeFileSync(cfg, JSON.stringify({ engines: o.engines }));
      result.workers.push(
        await startRole('worker', h, { HOST_ID: h.name, WORKER_CONFIG: cfg, ENFORCEMENT: 'watchdog', HEARTBEAT_MS: '500', ...o.workerEnv }),
      );
    }
    // Start them all at once (tsx start-up is CPU-bound; the waits overlap), then wait for each.
    await Promise.all([...result.gateways, ...(o.deferWorkers ? [] : result.workers)].map((r) => r.restart()));
    return result;
  } catch (err) {
    await close().catch(() => undefined);
    throw err;
  }
}
