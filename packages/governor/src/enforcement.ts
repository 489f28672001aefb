import { existsSync, mkdirSync, readFileSync, rmdirSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { EnforcementMode } from '@photoenhance/contracts';

/** Where per-engine cgroups are made, and why this mode was chosen. */
export interface EnforcementPlan {
  mode: EnforcementMode;
  reason: string;
  /** cgroup-v2: the parent group (memory enabled in its subtree_control). */
  v2Dir?: string;
  /** cgroup-v1: parent groups in the memory hierarchy and, where writable, the cpu hierarchy. */
  v1MemoryDir?: string;
  v1CpuDir?: string;
  /** The root is a plain directory laid out like cgroupfs (tests): rmdir cannot remove its files. */
  fake: boolean;
}

export interface DetectOptions {
  requested?: 'auto' | EnforcementMode;
  /** A directory laid out like cgroupfs; default /sys/fs/cgroup. */
  cgroupRoot?: string;
  /** Parent group name the engines' groups live under. Default "photoenhance". */
  group?: string;
  /**
   * This process's own cgroup v2 path (the `0::` line of /proc/self/cgroup), tried first: under systemd with
   * `Delegate=yes` it is the only subtree the worker may write. Default: read from /proc/self/cgroup, unless
   * `cgroupRoot` is given (tests pass both).
   */
  selfCgroup?: string;
  /** Our pid, moved to a leaf group before controllers are enabled in a delegated group (v2 "no internal processes"). */
  pid?: number;
}

/** The cgroup v2 path of this process, or undefined on v1-only hosts or at the root. */
export function ownCgroupV2Path(procSelfCgroup = read('/proc/self/cgroup')): string | undefined {
  const line = procSelfCgroup?.split('\n').find((l) => l.startsWith('0::'));
  const path = line?.slice(3).trim();
  return path && path !== '/' ? path : undefined;
}

const CGROUP2_MAGIC = 0x63677270;
const CGROUP1_MAGIC = 0x27e0eb;

export function isCgroupFs(path: string): boolean {
  try {
    const t = statfsSync(path).type;
    return t === CGROUP2_MAGIC || t === CGROUP1_MAGIC;
  } catch {
    return false;
  }
}

const read = (p: string): string | undefined => {
  try {
    return readFileSync(p, 'utf8');
  } catch {
    return undefined;
  }
};

const errText = (e: unknown): string => (e as NodeJS.ErrnoException).code ?? String(e);

/** Make a probe group under `parent`, write one limit file, remove it. Throws with the failing step. */
function probe(parent: string, file: string, value: string, fake: boolean): void {
  const dir = join(parent, `pe-probe-${process.pid}`);
  mkdirSync(dir);
  try {
    writeFileSync(join(dir, file), value);
  } finally {
    if (fake) rmSync(dir, { recursive: true, force: true });
    else rmdirSync(dir);
  }
}

/**
 * Delegated subtree (systemd Delegate=yes): move ourselves into a `worker` leaf of our own group, enable the memory
 * (and cpu) controllers for its children, and put the engines' groups beside that leaf. The kernel then counts the
 * engines inside the unit's own MemoryMax too.
 */
function tryDelegatedV2(root: string, self: string, group: string, pid: number): EnforcementPlan | string {
  const own = join(root, self);
  const controllers = read(join(own, 'cgroup.controllers'));
  if (controllers === undefined) return `no cgroup v2 group of our own at ${own}`;
  if (!controllers.split(/\s+/).includes('memory'))
    return `our own cgroup ${own} has no memory controller delegated (cgroup.controllers: "${controllers.trim()}"; set Delegate=yes)`;
  const fake = !isCgroupFs(root);
  const procs = (read(join(own, 'cgroup.procs')) ?? '').split(/\s+/).filter(Boolean);
  if (procs.length > 0) {
    const leaf = join(own, 'worker');
    try {
      mkdirSync(leaf, { recursive: true });
      for (const p of procs.includes(String(pid)) ? [String(pid)] : procs)
        writeFileSync(join(leaf, 'cgroup.procs'), `${p}\n`, { flag: fake ? 'a' : 'w' });
      if (fake) writeFileSync(join(own, 'cgroup.procs'), procs.filter((p) => p !== String(pid)).join('\n'));
    } catch (e) {
      return `cannot move the worker into the leaf group ${leaf} (${errText(e)}); set Delegate=yes on the unit`;
    }
  }
  const r = tryV2(own, group, controllers, fake);
  return typeof r === 'string'
    ? `delegated group ${own}: ${r}`
    : { ...r, reason: `${r.reason} (delegated subtree of this worker's own cgroup)` };
}

function tryV2(root: string, group: string, knownControllers?: string, knownFake?: boolean): EnforcementPlan | string {
  const controllers = knownControllers ?? read(join(root, 'cgroup.controllers'));
  if (controllers === undefined) return `no cgroup v2 hierarchy at ${root}`;
  if (!controllers.split(/\s+/).includes('memory')) {
    return `cgroup v2 at ${root} has no memory controller (cgroup.controllers: "${controllers.trim()}")`;
  }
  const fake = knownFake ?? !isCgroupFs(root);
  const enable = (dir: string): string | undefined => {
    const want = ['memory', ...(controllers.split(/\s+/).includes('cpu') ? ['cpu'] : [])];
    const have = (read(join(dir, 'cgroup.subtree_control')) ?? '').split(/\s+/);
    const missing = want.filter((c) => !have.includes(c));
    if (missing.length === 0) return undefined;
    try {
      // A fake root is a plain file: append so it reads like the kernel's list afterwards.
      writeFileSync(
        join(dir, 'cgroup.subtree_control'),
        fake ? [...have.filter(Boolean), ...missing].join(' ') : missing.map((c) => `+${c}`).join(' '),
      );
      return undefined;
    } catch (e) {
      return `cannot enable ${missing.join(', ')} in ${dir}/cgroup.subtree_control (${errText(e)})`;
    }
  };
  const rootErr = enable(root);
  if (rootErr && !(read(join(root, 'cgroup.subtree_control')) ?? '').includes('memory')) return rootErr;
  const dir = join(root, group);
  try {
    mkdirSync(dir, { recursive: true });
  } catch (e) {
    return `cannot create ${dir} (${errText(e)})`;
  }
  const groupErr = enable(dir);
  if (groupErr && !(read(join(dir, 'cgroup.subtree_control')) ?? '').includes('memory')) return groupErr;
  try {
    probe(dir, 'memory.max', 'max', fake);
  } catch (e) {
    return `cannot write memory.max under ${dir} (${errText(e)})`;
  }
  return {
    mode: 'cgroup-v2',
    reason: `cgroup v2 memory controller writable at ${dir}${fake ? ' (not a cgroup filesystem: limits are written but not enforced)' : ''}`,
    v2Dir: dir,
    fake,
  };
}

function tryV1(root: string, group: string): EnforcementPlan | string {
  const memRoot = join(root, 'memory');
  if (!existsSync(join(memRoot, 'memory.limit_in_bytes'))) return `no cgroup v1 memory hierarchy at ${memRoot}`;
  const fake = !isCgroupFs(memRoot);
  const dir = join(memRoot, group);
  try {
    mkdirSync(dir, { recursive: true });
    probe(dir, 'memory.limit_in_bytes', String(64 * 1024 * 1024), fake);
  } catch (e) {
    return `cgroup v1 memory hierarchy at ${memRoot} is not writable (${errText(e)})`;
  }
  let cpuDir: string | undefined = join(root, 'cpu', group);
  try {
    mkdirSync(cpuDir, { recursive: true });
    probe(cpuDir, 'cpu.cfs_quota_us', '-1', fake);
  } catch {
    cpuDir = undefined; // CPU quota is a nicety; memory is what matters.
  }
  return {
    mode: 'cgroup-v1',
    reason: `cgroup v1 memory controller writable at ${dir}`,
    v1MemoryDir: dir,
    ...(cpuDir ? { v1CpuDir: cpuDir } : {}),
    fake,
  };
}

/**
 * Pick the enforcement mode and say why. auto: cgroup v2 when a writable memory controller exists, else cgroup v1
 * when /sys/fs/cgroup/memory is writable, else the RSS watchdog alone. A requested cgroup mode that is not available
 * falls back to the watchdog, with the reason saying so (a governor that refuses to start helps no one at 3 a.m.).
 */
export function detectEnforcement(opts: DetectOptions = {}): EnforcementPlan {
  const requested = opts.requested ?? 'auto';
  const group = opts.group ?? 'photoenhance';
  if (requested === 'watchdog') return { mode: 'watchdog', reason: 'watchdog requested in configuration', fake: false };
  const v2Roots = opts.cgroupRoot ? [opts.cgroupRoot] : ['/sys/fs/cgroup', '/sys/fs/cgroup/unified'];
  const v1Root = opts.cgroupRoot ?? '/sys/fs/cgroup';
  const why: string[] = [];
  if (requested === 'auto' || requested === 'cgroup-v2') {
    const self = opts.selfCgroup ?? (opts.cgroupRoot ? undefined : ownCgroupV2Path());
    if (self) {
      const r = tryDelegatedV2(v2Roots[0]!, self, group, opts.pid ?? process.pid);
      if (typeof r !== 'string') return r;
      why.push(r);
    }
    for (const root of v2Roots) {
      const r = tryV2(root, group);
      if (typeof r !== 'string') return why.length ? { ...r, reason: `${r.reason} (${why.join('; ')})` } : r;
      why.push(r);
    }
  }
  if (requested === 'auto' || requested === 'cgroup-v1') {
    const r = tryV1(v1Root, group);
    if (typeof r !== 'string') {
      return why.length ? { ...r, reason: `${r.reason} (${why.join('; ')})` } : r;
    }
    why.push(r);
  }
  const prefix = requested === 'auto' ? 'no writable memory cgroup' : `${requested} requested but unavailable`;
  return { mode: 'watchdog', reason: `${prefix}: ${why.join('; ')}; RSS watchdog only`, fake: false };
}
