import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';

/**
 * Names of temporary files and folders (partial uploads, worker staging) carry the host and pid of the process that
 * made them, so a process starting up can tell a dead process's leftovers (same host, pid gone: remove now) from a live
 * one's (keep), and fall back to age for other hosts (a shared folder or bucket).
 */
const SEP = '~';
const HOST = hostname().replace(/[^A-Za-z0-9.-]/g, '_') || 'host';

export function ownerTag(): string {
  return `${HOST}${SEP}${process.pid}${SEP}${randomBytes(6).toString('hex')}`;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists, under another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * True when a temp name made by ownerTag() belongs to a process that is gone (same host, pid not alive), or it is older
 * than `maxAgeMs` (any host; also names this code did not make).
 */
export function isAbandoned(name: string, ageMs: number, maxAgeMs: number): boolean {
  if (ageMs > maxAgeMs) return true;
  const [host, pid] = name.split(SEP);
  if (host !== HOST || !pid || !/^\d+$/.test(pid)) return false;
  const n = Number(pid);
  return n !== process.pid && !pidAlive(n);
}
