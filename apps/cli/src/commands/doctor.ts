import { dirname, resolve } from 'node:path';
import { EXIT } from '../exit.js';
import { checkNode, checkProfile, checkRedis, checkSharp, readProfiles, type CheckResult } from '../doctor/checks.js';

/** `photoenhance doctor` (declared in specs/doctor.ts). */
export async function doctor(flags: { config?: string; json?: boolean }): Promise<number> {
  const results = await runChecks(flags.config ?? process.env.WORKER_CONFIG);
  process.stdout.write(flags.json ? `${JSON.stringify(results, null, 2)}\n` : formatTable(results));
  return results.some((r) => r.required && !r.ok) ? EXIT.FAILED : EXIT.OK;
}

export async function runChecks(configFile: string | undefined): Promise<CheckResult[]> {
  const results: CheckResult[] = [checkNode(), ...(await checkRedis(process.env)), await checkSharp()];
  const config = readProfiles(configFile);
  if (config === undefined) {
    results.push({
      name: 'engine classic',
      ok: true,
      required: true,
      detail: 'built-in (no WORKER_CONFIG or --config: only the classic engine is configured)',
    });
  } else if ('error' in config) {
    results.push(config.error);
  } else if (config.profiles.length === 0) {
    results.push({
      name: 'engines',
      ok: true,
      required: true,
      detail: `${config.file} lists no engines: only the built-in classic engine is configured`,
    });
  } else {
    // Relative commands are taken from the cwd, as the worker does when started from here; scripts may also sit beside the config.
    const base = process.cwd();
    for (const p of config.profiles) {
      const r = await checkProfile(p, base);
      if (!r.ok && /does not exist/.test(r.detail)) {
        const beside = await checkProfile(p, dirname(resolve(config.file)));
        results.push(beside.ok ? beside : r);
      } else {
        results.push(r);
      }
    }
  }
  return results;
}

export function formatTable(results: CheckResult[]): string {
  const width = Math.max(...results.map((r) => r.name.length));
  const lines: string[] = [];
  for (const r of results) {
    const mark = r.ok ? '✓' : r.required ? '✗' : '!';
    lines.push(`${mark} ${r.name.padEnd(width)}  ${r.detail}`);
    for (const n of r.notes ?? []) lines.push(`  ${' '.repeat(width)}  · ${n}`);
    if (!r.ok && r.fix) lines.push(`  ${' '.repeat(width)}  fix: ${r.fix}`);
  }
  const failed = results.filter((r) => r.required && !r.ok).length;
  lines.push('', failed ? `${failed} required check${failed > 1 ? 's' : ''} failed.` : 'All required checks passed.');
  return `${lines.join('\n')}\n`;
}
