import { useEffect, useRef, useState } from 'preact/hooks';
import { live } from './api';
import type { JobChange } from './types';

/** Re-render when the live store changes. */
function useBump(): [number, () => void] {
  const [n, set] = useState(0);
  return [n, () => set((x) => x + 1)];
}

export function useLive(): typeof live {
  const [, bump] = useBump();
  useEffect(() => live.subscribe(bump), []);
  return live;
}

export function useJobChanges(fn: (changes: JobChange[]) => void): void {
  const ref = useRef(fn);
  ref.current = fn;
  useEffect(() => live.onJobs((c) => ref.current(c)), []);
}

export function useHashRoute(): string[] {
  const [, bump] = useBump();
  useEffect(() => {
    window.addEventListener('hashchange', bump);
    return () => window.removeEventListener('hashchange', bump);
  }, []);
  return location.hash.replace(/^#\/?/, '').split('?')[0]!.split('/').filter(Boolean).map(decodeURIComponent);
}

/** Re-render every `everyMs` (for "x ago" texts). */
export function useTick(everyMs: number): number {
  const [n, bump] = useBump();
  useEffect(() => {
    const t = setInterval(bump, everyMs);
    return () => clearInterval(t);
  }, [everyMs]);
  return n;
}
