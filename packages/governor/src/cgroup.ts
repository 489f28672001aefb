import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type { EnforcementPlan } from './enforcement.js';

/**
 * Joins the listed groups, then becomes the engine. A fixed literal: every value (count, dirs, argv) arrives as a
 * positional argument, so nothing is ever parsed by the shell. The engine is exec'd, so it keeps this pid and
 * allocates nothing before it is charged to its group (cgroup v1 does not move charges afterwards).
 */
export const JOIN_SCRIPT =
  'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1/cgroup.procs" || exit 125; n=$((n-1)); shift; done; exec "$@"';

export interface SlotLimits {
  limitBytes: number;
  cpuQuota?: number;
}

const readNum = (p: string, key?: string): number | undefined => {
  let text: string;
  try {
    text = readFileSync(p, 'utf8');
  } catch {
    return undefined;
  }
  if (key === undefined) return Number(text.trim());
  const m = new RegExp(`^${key}\\s+(\\d+)`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
};

const writeIfExists = (p: string, v: string): void => {
  if (existsSync(p)) writeFileSync(p, v);
};

/**
 * Make `leaf` under a parent group that every governor on the host shares, and that each one removes when it closes
 * and finds it empty (Governor.close): a parent gone meanwhile is made again (v2: with memory and cpu enabled for its
 * children, as detection left it), a few times. Without this, a worker stopping beside another dropped the other's
 * next engines to the watchdog alone. Once the leaf exists the parent cannot go (rmdir of a group with children fails).
 * A leaf of the same name left behind (empty) is removed and made afresh.
 */
function makeLeaf(parent: string, leaf: string, v2: boolean, fake: boolean): string {
  const dir = join(parent, leaf);
  for (let attempt = 1; ; attempt++) {
    try {
      mkdirSync(dir);
      return dir;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if ((code !== 'ENOENT' && code !== 'EEXIST') || attempt === 3) throw e;
      if (code === 'EEXIST') {
        // Names are unique per worker pid and sequence, so this one was left by a dead worker whose pid came round
        // again (a removal that timed out). Empty, it goes; the kernel refuses to remove a group that holds a process.
        if (fake) rmSync(dir, { recursive: true, force: true });
        else rmdirSync(dir);
        continue;
      }
    }
    mkdirSync(parent, { recursive: true });
    if (v2) {
      const available = existsSync(join(parent, 'cgroup.controllers'))
        ? readFileSync(join(parent, 'cgroup.controllers'), 'utf8').split(/\s+/)
        : [];
      const want = ['memory', 'cpu'].filter((c) => available.includes(c));
      if (want.length > 0) writeFileSync(join(parent, 'cgroup.subtree_control'), want.map((c) => `+${c}`).join(' '));
    }
  }
}

/** One engine process's own cgroup(s): made before spawn, removed after the process is gone. */
export class CgroupSlot {
  private constructor(
    readonly plan: EnforcementPlan,
    /** Dirs the process joins; the memory group first. */
    readonly dirs: string[],
  ) {}

  /** Make `pe-<name>` under the plan's parent group(s) and write the limits. Throws on failure. */
  static create(plan: EnforcementPlan, name: string, limits: SlotLimits): CgroupSlot {
    const leaf = `pe-${name.replace(/[^A-Za-z0-9_.-]/g, '_')}`;
    if (plan.mode === 'cgroup-v2' && plan.v2Dir) {
      const dir = makeLeaf(plan.v2Dir, leaf, true, plan.fake);
      const slot = new CgroupSlot(plan, [dir]);
      try {
        writeFileSync(join(dir, 'memory.max'), String(limits.limitBytes));
        // memory.high throttles and reclaims a little before the hard stop, which turns some OOM kills into slow-downs.
        writeFileSync(join(dir, 'memory.high'), String(Math.floor(limits.limitBytes * 0.95)));
        writeIfExists(join(dir, 'memory.swap.max'), '0'); // swap would let the tree pass the limit unseen
        writeIfExists(join(dir, 'memory.oom.group'), '1'); // kill the whole tree, not one helper
        if (limits.cpuQuota) writeFileSync(join(dir, 'cpu.max'), `${Math.round(limits.cpuQuota * 100_000)} 100000`);
      } catch (e) {
        slot.removeNow();
        throw e;
      }
      return slot;
    }
    if (plan.mode === 'cgroup-v1' && plan.v1MemoryDir) {
      const mem = makeLeaf(plan.v1MemoryDir, leaf, false, plan.fake);
      const dirs = [mem];
      try {
        writeFileSync(join(mem, 'memory.limit_in_bytes'), String(limits.limitBytes));
        // memsw must be >= the memory limit, so it is written second; without it swap would stretch the limit.
        try {
          writeIfExists(join(mem, 'memory.memsw.limit_in_bytes'), String(limits.limitBytes));
        } catch {
          /* swap accounting off: nothing to limit */
        }
        if (plan.v1CpuDir && limits.cpuQuota) {
          const cpu = makeLeaf(plan.v1CpuDir, leaf, false, plan.fake);
          dirs.push(cpu);
          writeFileSync(join(cpu, 'cpu.cfs_period_us'), '100000');
          writeFileSync(join(cpu, 'cpu.cfs_quota_us'), String(Math.round(limits.cpuQuota * 100_000)));
        }
      } catch (e) {
        new CgroupSlot(plan, dirs).removeNow();
        throw e;
      }
      return new CgroupSlot(plan, dirs);
    }
    throw new Error(`no cgroup parent for mode ${plan.mode}`);
  }

  get memoryDir(): string {
    return this.dirs[0]!;
  }

  /** argv that joins this slot's groups, then execs `argv`. */
  wrap(argv: readonly string[]): string[] {
    return ['/bin/sh', '-c', JOIN_SCRIPT, 'pe-cgroup-join', String(this.dirs.length), ...this.dirs, ...argv];
  }

  /** OOM kills the kernel recorded in this group (undefined where the kernel does not count them). */
  oomKills(): number | undefined {
    if (this.plan.mode === 'cgroup-v2') return readNum(join(this.memoryDir, 'memory.events'), 'oom_kill');
    return readNum(join(this.memoryDir, 'memory.oom_control'), 'oom_kill');
  }

  /** Times the group hit its limit (v1 memory.failcnt, v2 memory.events max). */
  limitHits(): number | undefined {
    if (this.plan.mode === 'cgroup-v2') return readNum(join(this.memoryDir, 'memory.events'), 'max');
    return readNum(join(this.memoryDir, 'memory.failcnt'));
  }

  /** The kernel's high-water mark of the group's usage (v1 memory.max_usage_in_bytes, v2 memory.peak). */
  peakBytes(): number | undefined {
    return readNum(join(this.memoryDir, this.plan.mode === 'cgroup-v2' ? 'memory.peak' : 'memory.max_usage_in_bytes'));
  }

  limitBytes(): number | undefined {
    return readNum(join(this.memoryDir, this.plan.mode === 'cgroup-v2' ? 'memory.max' : 'memory.limit_in_bytes'));
  }

  /** Pids in the group: the engine and everything it started, wherever they moved in the process tree. */
  pids(): number[] {
    try {
      return readFileSync(join(this.memoryDir, 'cgroup.procs'), 'utf8')
        .split('\n')
        .filter(Boolean)
        .map(Number)
        .filter((n) => n > 0);
    } catch {
      return [];
    }
  }

  /** SIGKILL everything left in the group (a helper that left the process group is still here). */
  killAll(): void {
    const kill = join(this.memoryDir, 'cgroup.kill');
    if (!this.plan.fake && this.plan.mode === 'cgroup-v2' && existsSync(kill)) {
      try {
        writeFileSync(kill, '1');
        return;
      } catch {
        /* fall through to one by one */
      }
    }
    for (const pid of this.pids()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  }

  /** Remove the group(s) once empty; the kernel needs a moment after the last exit, so retry for a while. */
  async remove(timeoutMs = 3_000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.removeNow()) return true;
      if (Date.now() > deadline) return false;
      this.killAll();
      await delay(20);
    }
  }

  private removeNow(): boolean {
    let ok = true;
    for (const dir of [...this.dirs].reverse()) {
      try {
        if (this.plan.fake) rmSync(dir, { recursive: true, force: true });
        else rmdirSync(dir);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') ok = false;
      }
    }
    return ok;
  }
}

/** `pe-<profile>-<pid>-<seq>` (see Governor's slot names) and `pe-probe-<pid>`: the pid of the worker that made it. */
const OWNED_LEAF = /^pe-(?:.+-(\d+)-\d+|probe-(\d+))$/;

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Remove the engine groups that dead workers left under `parents` (a worker killed outright cannot remove its own).
 * Only groups named for a worker pid that is no longer alive, and only empty ones: a group of a live worker (this
 * one included), or one that still holds a process, is never touched. Returns the removed paths.
 */
export function removeStaleGroups(parents: readonly string[], opts: { fake?: boolean; alive?: (pid: number) => boolean } = {}): string[] {
  const alive = opts.alive ?? pidAlive;
  const removed: string[] = [];
  for (const parent of parents) {
    let names: string[];
    try {
      names = readdirSync(parent);
    } catch {
      continue;
    }
    for (const name of names) {
      const m = OWNED_LEAF.exec(name);
      const pid = Number(m?.[1] ?? m?.[2]);
      if (!m || !(pid > 0) || pid === process.pid || alive(pid)) continue;
      const dir = join(parent, name);
      let procs: string;
      try {
        procs = readFileSync(join(dir, 'cgroup.procs'), 'utf8');
      } catch {
        continue; // not a group (or gone meanwhile)
      }
      if (procs.trim() !== '') continue;
      try {
        if (opts.fake) rmSync(dir, { recursive: true, force: true });
        else rmdirSync(dir); // the kernel refuses a group that is not empty: a process that joined meanwhile is safe
        removed.push(dir);
      } catch {
        /* busy or gone */
      }
    }
  }
  return removed;
}
