import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { REPO } from './support/stack.js';

const run = promisify(execFile);
const VITEST = join(REPO, 'node_modules/vitest/vitest.mjs');

async function files(project?: string): Promise<string[]> {
  const { stdout } = await run(process.execPath, [VITEST, 'list', '--filesOnly', ...(project ? ['--project', project] : [])], {
    cwd: REPO,
    timeout: 60_000,
  });
  return stdout
    .split('\n')
    .map((l) => l.replace(/^\[[^\]]+\]\s*/, '').trim())
    .filter((l) => l.endsWith('.test.ts'));
}

describe('vitest projects', () => {
  it("`npm run test:unit` (--project unit) selects the packages', engines' and apps' own suites and nothing from test/", async () => {
    const [unit, e2e, all] = await Promise.all([files('unit'), files('e2e'), files()]);
    expect(unit.length).toBeGreaterThan(0);
    for (const f of unit) expect(f).toMatch(/^(packages|engines|apps)\/[^/]+\/test\//);
    for (const f of e2e) expect(f).toMatch(/^test\//);
    expect(e2e).toContain('test/vitest-projects.test.ts');
    // Together the projects still run every file, each once.
    expect(new Set(all).size).toBe(all.length);
    expect([...unit, ...e2e].every((f) => all.includes(f))).toBe(true);
  });
});
