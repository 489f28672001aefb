import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, describe, expect, it } from 'vitest';
import { alive, fixture, FIXTURES, governor, TEST_GROUP, v1Unavailable, waitFor } from './helpers.js';

/** Running (a zombie is dead: it only waits for its new parent, PID 1 here, to reap it). */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) [ZX]/s.test(stat);
  } catch {
    return false;
  }
}

/** A pid that certainly belonged to a process and is now gone (a child that already exited and was reaped). */
async function deadPid(): Promise<number> {
  const p = spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' });
  await new Promise((r) => p.once('exit', r));
  return p.pid!;
}

describe('engines die with their worker', () => {
  it('an engine that ignores stdin EOF and SIGTERM is gone within ~1 s of its worker being SIGKILLed', async () => {
    const host = spawn(
      process.execPath,
      ['--import', 'tsx', join(FIXTURES, 'governor-host.ts'), 'watchdog', TEST_GROUP, ...fixture('ignore-term')],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    let enginePid: number | undefined;
    try {
      const line = await new Promise<string>((resolve, reject) => {
        createInterface({ input: host.stdout! }).once('line', resolve);
        host.once('exit', (code) => reject(new Error(`governor host exited (${code}) before its engine started`)));
      });
      enginePid = (JSON.parse(line) as { enginePid: number }).enginePid;
      expect(alive(enginePid)).toBe(true);
      host.kill('SIGKILL');
      const killedAt = Date.now();
      await waitFor(() => !running(enginePid!), 5_000, `engine ${enginePid} to be gone`);
      // The kernel delivers the parent-death signal at once; the margin is for a loaded machine.
      console.log(`engine gone ${Date.now() - killedAt} ms after its worker`);
      expect(Date.now() - killedAt).toBeLessThan(1_000);
    } finally {
      host.kill('SIGKILL');
      if (enginePid !== undefined && running(enginePid)) process.kill(enginePid, 'SIGKILL'); // the old behaviour's orphan
    }
  }, 60_000);
});

const v1Skip = v1Unavailable();
describe.skipIf(v1Skip !== undefined)(`stale engine cgroups: real cgroup v1${v1Skip ? ` (skipped: ${v1Skip})` : ''}`, () => {
  const parent = `/sys/fs/cgroup/memory/${TEST_GROUP}`;
  const made: string[] = [];
  const group = (name: string): string => {
    mkdirSync(parent, { recursive: true });
    const dir = join(parent, name);
    mkdirSync(dir);
    made.push(dir);
    return dir;
  };
  afterAll(() => {
    for (const d of made.reverse()) {
      try {
        rmdirSync(d);
      } catch {
        /* removed by the test */
      }
    }
  });

  it('a starting governor removes the empty groups of dead workers, and only those', async () => {
    const dead = await deadPid();
    const stale = [group(`pe-classic-${dead}-1`), group(`pe-gfp-gan-2-${dead}-7`)];
    // Dead owner, but a process still inside: never removed.
    const busy = group(`pe-classic-${dead}-2`);
    const sleeper = spawn('sleep', ['30'], { stdio: 'ignore' });
    writeFileSync(join(busy, 'cgroup.procs'), String(sleeper.pid));
    // Empty, but its owner (another live "worker") is alive: never removed.
    const other = spawn('sleep', ['30'], { stdio: 'ignore' });
    const owned = group(`pe-classic-${other.pid}-1`);
    // Not ours at all.
    const foreign = group('someone-else');
    try {
      const g = governor([{ name: 'normal', command: fixture('normal') }], { enforcement: 'cgroup-v1' });
      await g.start();
      expect(g.snapshot().enforcement.mode).toBe('cgroup-v1');
      for (const d of stale) expect(existsSync(d), d).toBe(false);
      for (const d of [busy, owned, foreign]) expect(existsSync(d), d).toBe(true);
      await g.close();
    } finally {
      sleeper.kill('SIGKILL');
      other.kill('SIGKILL');
      await waitFor(() => !alive(sleeper.pid) && !alive(other.pid), 5_000, 'the sleepers to exit');
    }
    // Once its process is gone the busy group is stale too: the next start takes it.
    const g2 = governor([{ name: 'normal', command: fixture('normal') }], { enforcement: 'cgroup-v1' });
    await g2.start();
    await waitFor(() => !existsSync(busy), 5_000, 'the now empty group to be removed');
    expect(existsSync(owned)).toBe(false); // its owner has died meanwhile
  }, 30_000);
});
