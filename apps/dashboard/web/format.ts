export function bytes(n: number | undefined): string {
  if (n === undefined || !Number.isFinite(n)) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v >= 100 || i === 0 ? 0 : 1)} ${units[i]}`;
}

export function ms(n: number | undefined): string {
  if (n === undefined || !Number.isFinite(n)) return '–';
  if (n < 1000) return `${Math.round(n)} ms`;
  if (n < 60_000) return `${(n / 1000).toFixed(n < 10_000 ? 2 : 1)} s`;
  if (n < 3_600_000) return `${Math.floor(n / 60_000)} m ${Math.round((n % 60_000) / 1000)} s`;
  return `${Math.floor(n / 3_600_000)} h ${Math.round((n % 3_600_000) / 60_000)} m`;
}

export function time(at: number | string | undefined): string {
  if (at === undefined) return '–';
  const d = new Date(at);
  return d.toLocaleTimeString(undefined, { hour12: false });
}

export function ago(at: number | string | undefined, now = Date.now()): string {
  if (at === undefined) return '–';
  const t = typeof at === 'number' ? at : Date.parse(at);
  return `${ms(Math.max(0, now - t))} ago`;
}

export function pct(r: number | undefined): string {
  return r === undefined || !Number.isFinite(r) ? '–' : `${(r * 100).toFixed(r < 0.1 ? 1 : 0)} %`;
}
