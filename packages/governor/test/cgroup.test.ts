import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CgroupSlot, detectEnforcement, type EngineJobError, JOIN_SCRIPT } from '../src/index.js';
import { fixture, governor, MiB, req, TEST_GROUP, waitFor } from './helpers.js';

/** A temp dir laid out like a cgroup v2 root. */
function fakeV2(controllers = 'cpuset cpu io memory pids'): string {
  const root = mkdtempSync(join(tmpdir(), 'pe-cgv2-'));
  writeFileSync(join(root, 'cgroup.controllers'), `${controllers}\n`);
  writeFileSync(join(root, 'cgroup.subtree_control'), '');
  writeFileSync(join(root, 'cgroup.procs'), '');
  return root;
}

const read = (p: string): string => readFileSync(p, 'utf8').trim();

describe('cgroup v2 file logic (temp dir laid out like cgroupfs)', () => {
  it('detects v2 with a memory controller and enables memory (+cpu) for the engines group', () => {
    const root = fakeV2();
    const plan = detectEnforcement({ requested: 'auto', cgroupRoot: root, group: TEST_GROUP });
    expect(plan.mode).toBe('cgroup-v2');
    expect(plan.fake).toBe(true);
    expect(plan.v2Dir).toBe(join(root, TEST_GROUP));
    expect(plan.reason).toContain('cgroup v2 memory controller writable');
    expect(read(join(root, 'cgroup.subtree_control')).split(' ')).toEqual(expect.arrayContaining(['memory', 'cpu']));
    expect(read(join(root, TEST_GROUP, 'cgroup.subtree_control')).split(' ')).toEqual(expect.arrayContaining(['memory', 'cpu']));
    expect(readdirSync(join(root, TEST_GROUP)).filter((n) => n.startsWith('pe-'))).toEqual([]); // probe removed
  });

  it('without a memory controller (and no v1) falls back to the watchdog and says why', () => {
    const root = fakeV2('cpu pids hugetlb');
    const plan = detectEnforcement({ requested: 'auto', cgroupRoot: root, group: TEST_GROUP });
    expect(plan.mode).toBe('watchdog');
    expect(plan.reason).toContain('has no memory controller');
    expect(plan.reason).toContain('no cgroup v1 memory hierarchy');
    expect(detectEnforcement({ requested: 'watchdog' }).reason).toContain('requested');
  });

  it('a slot writes memory.max, memory.high (95 %), cpu.max; reads oom_kill from memory.events; is removed', () => {
    const root = fakeV2();
    const plan = detectEnforcement({ cgroupRoot: root, group: TEST_GROUP });
    const slot = CgroupSlot.create(plan, 'classic-1', { limitBytes: 256 * MiB, cpuQuota: 1.5 });
    const dir = join(root, TEST_GROUP, 'pe-classic-1');
    expect(slot.dirs).toEqual([dir]);
    expect(read(join(dir, 'memory.max'))).toBe(String(256 * MiB));
    expect(read(join(dir, 'memory.high'))).toBe(String(Math.floor(256 * MiB * 0.95)));
    expect(read(join(dir, 'cpu.max'))).toBe('150000 100000');
    expect(slot.wrap(['node', 'e.mjs', '; rm -rf /'])).toEqual([
      '/bin/sh',
      '-c',
      JOIN_SCRIPT,
      'pe-cgroup-join',
      '1',
      dir,
      'node',
      'e.mjs',
      '; rm -rf /',
    ]);
    expect(slot.oomKills()).toBeUndefined();
    writeFileSync(join(dir, 'memory.events'), 'low 0\nhigh 12\nmax 3\noom 1\noom_kill 1\n');
    expect(slot.oomKills()).toBe(1);
    expect(slot.limitHits()).toBe(3);
    return slot.remove().then((ok) => {
      expect(ok).toBe(true);
      expect(existsSync(dir)).toBe(false);
    });
  });

  it('the engine joins its group before it runs, and an OOM kill recorded there → ENGINE_MEMORY_LIMIT (cgroup-v2)', async () => {
    const root = fakeV2();
    const g = governor([{ name: 'hang', command: fixture('hang') }], { cgroupRoot: root });
    const run = g.run('hang', req()).catch((e: EngineJobError) => e);
    const pid = await waitFor(() => g.snapshot().processes.find((p) => p.state === 'busy')?.pid, 10_000, 'busy');
    expect(g.snapshot().processes[0]!.enforcement).toBe('cgroup-v2');
    const parent = join(root, TEST_GROUP);
    const leaf = readdirSync(parent).find((n) => n.startsWith(`pe-hang-${process.pid}-`))!;
    expect(read(join(parent, leaf, 'cgroup.procs'))).toBe(String(pid)); // the wrapper wrote its own pid, then exec'd
    expect(read(join(parent, leaf, 'memory.max'))).toBe(String(256 * MiB));
    // Play the kernel: record an OOM kill and SIGKILL the engine.
    writeFileSync(join(parent, leaf, 'memory.events'), 'oom 1\noom_kill 1\n');
    process.kill(pid!, 'SIGKILL');
    const e = (await run) as EngineJobError;
    expect(e.code).toBe('ENGINE_MEMORY_LIMIT');
    expect(e.message).toContain('enforced by cgroup-v2 OOM kill');
    await waitFor(() => !existsSync(join(parent, leaf)), 5_000, 'the group to be removed');
  });

  it('a v1 layout (memory/memory.limit_in_bytes) in a temp dir gives limit_in_bytes and memsw', () => {
    const root = mkdtempSync(join(tmpdir(), 'pe-cgv1-'));
    mkdirSync(join(root, 'memory'));
    writeFileSync(join(root, 'memory', 'memory.limit_in_bytes'), '9223372036854771712');
    const plan = detectEnforcement({ cgroupRoot: root, group: TEST_GROUP });
    expect(plan.mode).toBe('cgroup-v1');
    const slot = CgroupSlot.create(plan, 'x', { limitBytes: 300 * MiB });
    expect(read(join(slot.memoryDir, 'memory.limit_in_bytes'))).toBe(String(300 * MiB));
    writeFileSync(join(slot.memoryDir, 'memory.oom_control'), 'oom_kill_disable 0\nunder_oom 0\noom_kill 2\n');
    expect(slot.oomKills()).toBe(2);
    return slot.remove();
  });
});

describe('cgroup v2 delegated subtree (systemd Delegate=yes), temp dir laid out like cgroupfs', () => {
  it('moves the worker into a leaf of its own group and creates the engines group beside it', () => {
    const root = fakeV2();
    const own = join(root, 'system.slice', 'photoenhance-worker.service');
    mkdirSync(own, { recursive: true });
    writeFileSync(join(own, 'cgroup.controllers'), 'cpu memory pids\n');
    writeFileSync(join(own, 'cgroup.subtree_control'), '');
    writeFileSync(join(own, 'cgroup.procs'), '4242\n');
    const plan = detectEnforcement({
      requested: 'auto',
      cgroupRoot: root,
      selfCgroup: '/system.slice/photoenhance-worker.service',
      pid: 4242,
      group: TEST_GROUP,
    });
    expect(plan.mode).toBe('cgroup-v2');
    expect(plan.v2Dir).toBe(join(own, TEST_GROUP));
    expect(plan.reason).toContain('delegated');
    expect(read(join(own, 'worker', 'cgroup.procs'))).toBe('4242');
    expect(read(join(own, 'cgroup.subtree_control')).split(' ')).toEqual(expect.arrayContaining(['memory', 'cpu']));
    // The machine root was not touched.
    expect(read(join(root, 'cgroup.subtree_control'))).toBe('');
  });

  it('a delegated group without the memory controller says to set Delegate=yes and falls back to the root', () => {
    const root = fakeV2();
    const own = join(root, 'system.slice', 'w.service');
    mkdirSync(own, { recursive: true });
    writeFileSync(join(own, 'cgroup.controllers'), 'pids\n');
    const plan = detectEnforcement({ requested: 'auto', cgroupRoot: root, selfCgroup: '/system.slice/w.service', group: TEST_GROUP });
    expect(plan.mode).toBe('cgroup-v2');
    expect(plan.v2Dir).toBe(join(root, TEST_GROUP));
    expect(plan.reason).toContain('Delegate=yes');
  });

  it('reads its own v2 path from /proc/self/cgroup text', async () => {
    const { ownCgroupV2Path } = await import('../src/index.js');
    expect(ownCgroupV2Path('0::/system.slice/photoenhance-worker.service\n')).toBe('/system.slice/photoenhance-worker.service');
    expect(ownCgroupV2Path('9:name=systemd:/\n0::/\n')).toBeUndefined();
    expect(ownCgroupV2Path('4:memory:/\n')).toBeUndefined();
  });
});
