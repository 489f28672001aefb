import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  SUPERVISOR_PROGRAM_KEYS,
  SYSTEMD_DEPRECATED,
  SYSTEMD_KEYS,
  checkPhotoenhanceUnit,
  deployFiles,
  lintEnvFile,
  lintFile,
  lintRedisConf,
  lintSupervisor,
  lintSystemdUnit,
  parseSupervisor,
  parseSystemd,
  systemdBytes,
  systemdSeconds,
  unitSettings,
} from '../deploy/lint.js';

const root = join(import.meta.dirname, '..');
const deploy = join(root, 'deploy');
const read = (p: string): string => readFileSync(join(deploy, p), 'utf8');
const messages = (ps: Array<{ line: number; message: string }>): string[] => ps.map((p) => `${p.line}: ${p.message}`);

/** A worker unit that passes every check; the negative tests below break one thing at a time. */
const GOOD_WORKER = `[Unit]
Description=w
After=network-online.target
After=redis-server.service

[Service]
User=photoenhance
WorkingDirectory=/opt/photoenhance
ExecStart=/usr/bin/node /opt/photoenhance/apps/cli/bin/photoenhance.js worker
Restart=on-failure
KillMode=mixed
TimeoutStopSec=2min
Delegate=yes
OOMPolicy=continue
# 2 engines x 8 GiB + 2 GiB headroom = 18 GiB
MemoryMax=18G
MemoryHigh=17G
CPUQuota=900%
TasksMax=2048
LimitNOFILE=65536
NoNewPrivileges=yes
PrivateTmp=yes

[Install]
WantedBy=multi-user.target
`;

describe('deploy files', () => {
  it('has every file the issue asks for', () => {
    for (const f of [
      'systemd/photoenhance-gateway.service',
      'systemd/photoenhance-worker.service',
      'systemd/photoenhance.env',
      'systemd/redis-photoenhance.conf',
      'supervisor/photoenhance.conf',
      'README.md',
    ]) {
      expect(existsSync(join(deploy, f)), f).toBe(true);
    }
  });

  it('every deploy file passes the lint (known keys, no inline comments, valid values, project policy)', () => {
    const files = deployFiles(deploy);
    expect(files.length).toBeGreaterThanOrEqual(5);
    for (const file of files) expect(messages(lintFile(file)), file).toEqual([]);
  });

  it('the worker unit delegates its cgroup and stops engines with it', () => {
    const s = unitSettings(read('systemd/photoenhance-worker.service'));
    expect(s.get('Service.Delegate')).toBe('yes');
    expect(['mixed', 'control-group']).toContain(s.get('Service.KillMode'));
    expect(systemdSeconds(s.get('Service.TimeoutStopSec')!)).toBeGreaterThanOrEqual(30);
    expect(s.get('Service.Restart')).toBe('on-failure');
    expect(s.get('Service.OOMPolicy')).toBe('continue');
    expect(s.get('Service.User')).toBe('photoenhance');
    expect(s.get('Service.ExecStart')).toBe('/usr/bin/node /opt/photoenhance/apps/cli/bin/photoenhance.js worker');
  });

  it('the worker MemoryMax is N engines x 8 GiB + headroom, with the arithmetic on a comment line of its own', () => {
    const text = read('systemd/photoenhance-worker.service');
    const line = text.split('\n').find((l) => /^#.*engines x 8 GiB/.test(l));
    expect(line, 'a "# N engines x 8 GiB + H GiB headroom ... = T GiB" comment line').toBeDefined();
    const m = /(\d+) engines x 8 GiB.*?\+ (\d+) GiB headroom.*?= (\d+) GiB/s.exec(text.slice(text.indexOf(line!)));
    expect(m).not.toBeNull();
    const [engines, headroom, total] = [Number(m![1]), Number(m![2]), Number(m![3])];
    expect(engines * 8 + headroom).toBe(total);
    const s = unitSettings(text);
    expect(systemdBytes(s.get('Service.MemoryMax')!)).toBe(total * 1024 ** 3);
    expect(systemdBytes(s.get('Service.MemoryHigh')!)).toBeLessThan(total * 1024 ** 3);
  });

  it("the worker gets its shutdown grace and the engines' stop before systemd or supervisor SIGKILLs it", () => {
    const grace = Number(/^SHUTDOWN_GRACE_MS=(\d+)$/m.exec(read('systemd/photoenhance.env'))?.[1] ?? 30_000) / 1000;
    const engineStop = 5 + 10;
    expect(systemdSeconds(unitSettings(read('systemd/photoenhance-worker.service')).get('Service.TimeoutStopSec')!)).toBeGreaterThanOrEqual(
      grace + engineStop,
    );
    const worker = parseSupervisor(read('supervisor/photoenhance.conf')).sections.find((s) => s.name === 'program:photoenhance-worker')!;
    expect(Number(worker.entries.find((e) => e.key === 'stopwaitsecs')?.value)).toBeGreaterThanOrEqual(grace + engineStop);
  });

  it('the gateway unit has the same limits and hardening', () => {
    const s = unitSettings(read('systemd/photoenhance-gateway.service'));
    for (const k of ['MemoryMax', 'MemoryHigh', 'CPUQuota', 'TasksMax', 'LimitNOFILE', 'NoNewPrivileges', 'PrivateTmp'])
      expect(s.has(`Service.${k}`), k).toBe(true);
    expect(s.get('Service.ExecStart')).toBe('/usr/bin/node /opt/photoenhance/apps/cli/bin/photoenhance.js gateway');
  });

  it('every unit and program runs a role command, and that command really runs from this checkout (exit 78 naming REDIS_URL without it)', () => {
    const commands = [
      ['gateway', unitSettings(read('systemd/photoenhance-gateway.service')).get('Service.ExecStart')!],
      ['worker', unitSettings(read('systemd/photoenhance-worker.service')).get('Service.ExecStart')!],
      ...parseSupervisor(read('supervisor/photoenhance.conf')).sections.map((sec) => [
        sec.name.replace('program:photoenhance-', ''),
        sec.entries.find((e) => e.key === 'command')!.value,
      ]),
    ];
    expect(commands).toHaveLength(4);
    for (const [role, command] of commands) {
      const argv = command!.split(' ');
      expect(argv, command).toEqual(['/usr/bin/node', '/opt/photoenhance/apps/cli/bin/photoenhance.js', role]);
      // Run what the service manager would run, with this checkout in place of /opt/photoenhance and no Redis configured.
      const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, LOG_LEVEL: 'warn' };
      const r = spawnSync(process.execPath, [argv[1]!.replace('/opt/photoenhance', root), argv[2]!], {
        env,
        encoding: 'utf8',
        timeout: 60_000,
      });
      expect(r.status, `${command}\n${r.stderr}`).toBe(78);
      expect(r.stderr).toMatch(/REDIS_URL/);
    }
  }, 120_000);

  it('the lint rejects a unit that starts the wrong role or an app entry file directly', () => {
    const wrongRole = GOOD_WORKER.replace('photoenhance.js worker', 'photoenhance.js gateway');
    expect(messages(checkPhotoenhanceUnit(wrongRole, 'worker')).join()).toMatch(/ExecStart=.*role command "worker"/);
    const direct = GOOD_WORKER.replace(
      '/opt/photoenhance/apps/cli/bin/photoenhance.js worker',
      '--import tsx /opt/photoenhance/apps/worker/src/main.ts',
    );
    expect(messages(checkPhotoenhanceUnit(direct, 'worker')).join()).toMatch(/ExecStart=/);
  });

  it('a configuration error (exit 78) does not restart-loop under systemd', () => {
    for (const unit of ['systemd/photoenhance-gateway.service', 'systemd/photoenhance-worker.service']) {
      expect(unitSettings(read(unit)).get('Service.RestartPreventExitStatus'), unit).toBe('78');
    }
  });

  it('the env file names what both apps need', () => {
    const text = read('systemd/photoenhance.env');
    for (const k of ['REDIS_URL', 'STORAGE_DIR', 'HOST', 'PORT']) expect(text).toMatch(new RegExp(`^${k}=\\S`, 'm'));
    expect(text).not.toMatch(/^STORAGE_DIR=\/tmp/m);
  });

  it('the supervisor file has both programs, group signals, a stop wait, and says what supervisor cannot enforce', () => {
    const text = read('supervisor/photoenhance.conf');
    const { sections } = parseSupervisor(text);
    expect(sections.map((s) => s.name)).toEqual(['program:photoenhance-gateway', 'program:photoenhance-worker']);
    for (const s of sections) {
      const v = new Map(s.entries.map((e) => [e.key, e.value]));
      expect(v.get('stopasgroup'), s.name).toBe('true');
      expect(v.get('killasgroup'), s.name).toBe('true');
      expect(Number(v.get('stopwaitsecs')), s.name).toBeGreaterThanOrEqual(30);
    }
    const comments = text
      .split('\n')
      .filter((l) => l.startsWith(';'))
      .join('\n');
    expect(comments).toMatch(/NO memory or CPU limit/);
    expect(comments).toMatch(/watchdog/);
    expect(comments).toMatch(/cgroup/);
    expect(comments).toMatch(/[Aa]dmission/);
  });

  it('the README covers install, verification, delegation and supervisor', () => {
    const text = read('README.md');
    for (const s of [
      'daemon-reload',
      'enable --now',
      'systemctl show -p MemoryMax',
      'systemd-cgls',
      'Delegate=yes',
      'noeviction',
      'supervisor',
    ])
      expect(text).toContain(s);
  });
});

describe('the systemd lint catches what systemd ignores quietly', () => {
  it('accepts the good unit', () => {
    expect(messages([...lintSystemdUnit(GOOD_WORKER), ...checkPhotoenhanceUnit(GOOD_WORKER, 'worker')])).toEqual([]);
  });

  it('reports an inline comment', () => {
    const p = lintSystemdUnit(GOOD_WORKER.replace('MemoryMax=18G', 'MemoryMax=18G # two engines'));
    expect(p).toHaveLength(1);
    expect(p[0]!.message).toMatch(/inline comment in MemoryMax=/);
    expect(
      lintSystemdUnit(GOOD_WORKER.replace('TasksMax=2048', 'TasksMax=2048 ; threads'))
        .map((x) => x.message)
        .join(),
    ).toMatch(/inline comment in TasksMax=/);
  });

  it('reports an invented key, a deprecated key and an unknown section', () => {
    const bad = GOOD_WORKER.replace('Restart=on-failure', 'Restart=on-failure\nMaxMemory=8G\nMemoryLimit=8G\n[Sevice]\nUser=x');
    const text = messages(lintSystemdUnit(bad)).join('\n');
    expect(text).toMatch(/unknown key MaxMemory= in \[Service\]/);
    expect(text).toMatch(/MemoryLimit= is deprecated.*MemoryMax=/);
    expect(text).toMatch(/unknown section \[Sevice\]/);
  });

  it('reports a key in the wrong section', () => {
    expect(messages(lintSystemdUnit(GOOD_WORKER.replace('Description=w', 'Description=w\nMemoryMax=1G'))).join()).toMatch(
      /unknown key MemoryMax= in \[Unit\]/,
    );
  });

  it('reports a scalar key set twice, but not a list key', () => {
    const p = lintSystemdUnit(GOOD_WORKER.replace('MemoryHigh=17G', 'MemoryHigh=17G\nMemoryHigh=16G'));
    expect(messages(p).join()).toMatch(/MemoryHigh= set twice/);
    expect(GOOD_WORKER.match(/^After=/gm)).toHaveLength(2);
  });

  it.each(['24G', '1536M', '1.5G', '90%', 'infinity', '25769803776'])('accepts MemoryMax=%s', (v) => {
    expect(messages(lintSystemdUnit(`[Service]\nMemoryMax=${v}\n`))).toEqual([]);
  });

  it.each(['8GiB', 'lots', '150%', '8GB', '-1'])('rejects MemoryMax=%s', (v) => {
    expect(messages(lintSystemdUnit(`[Service]\nMemoryMax=${v}\n`)).join()).toMatch(/not a size|above 100%/);
  });

  it('rejects a CPUQuota that is not a percentage', () => {
    expect(messages(lintSystemdUnit('[Service]\nCPUQuota=2\n')).join()).toMatch(/CPUQuota=2 must be a percentage/);
    expect(messages(lintSystemdUnit('[Service]\nCPUQuota=250%\n'))).toEqual([]);
  });

  it('requires Delegate=yes, OOMPolicy=continue and a graceful stop on the worker', () => {
    const noDelegate = GOOD_WORKER.replace('Delegate=yes\n', '');
    expect(messages(checkPhotoenhanceUnit(noDelegate, 'worker')).join()).toMatch(/Delegate= is missing/);
    expect(messages(checkPhotoenhanceUnit(GOOD_WORKER.replace('Delegate=yes', 'Delegate=no'), 'worker')).join()).toMatch(/Delegate=no/);
    expect(messages(checkPhotoenhanceUnit(GOOD_WORKER.replace('KillMode=mixed', 'KillMode=process'), 'worker')).join()).toMatch(
      /KillMode=process/,
    );
    expect(messages(checkPhotoenhanceUnit(GOOD_WORKER.replace('TimeoutStopSec=2min', 'TimeoutStopSec=5s'), 'worker')).join()).toMatch(
      /TimeoutStopSec/,
    );
    expect(messages(checkPhotoenhanceUnit(GOOD_WORKER.replace('OOMPolicy=continue\n', ''), 'worker')).join()).toMatch(/OOMPolicy/);
    expect(messages(checkPhotoenhanceUnit(GOOD_WORKER.replace('MemoryHigh=17G', 'MemoryHigh=20G'), 'worker')).join()).toMatch(
      /MemoryHigh must be below MemoryMax/,
    );
    expect(messages(checkPhotoenhanceUnit(GOOD_WORKER.replace('PrivateTmp=yes\n', 'ProtectControlGroups=yes\n'), 'worker')).join()).toMatch(
      /PrivateTmp= is missing.*ProtectControlGroups=yes/s,
    );
  });

  it('requires absolute paths in ExecStart', () => {
    expect(messages(lintSystemdUnit('[Service]\nExecStart=node main.ts\n')).join()).toMatch(/absolute path/);
  });

  it('joins backslash continuations, as systemd does', () => {
    const { sections } = parseSystemd('[Service]\nExecStart=/usr/bin/node \\\n  --import tsx \\\n  /opt/x/main.ts\nUser=a\n');
    expect(sections[0]!.entries).toEqual([
      { key: 'ExecStart', value: '/usr/bin/node  --import tsx  /opt/x/main.ts', line: 2 },
      { key: 'User', value: 'a', line: 5 },
    ]);
  });

  it('parses sizes and time spans like systemd', () => {
    expect(systemdBytes('26G')).toBe(26 * 1024 ** 3);
    expect(systemdBytes('1536M')).toBe(1536 * 1024 ** 2);
    expect(systemdBytes('90%')).toBeUndefined();
    expect(systemdSeconds('2min 30s')).toBe(150);
    expect(systemdSeconds('120')).toBe(120);
    expect(systemdSeconds('soon')).toBeUndefined();
  });
});

describe('the supervisor lint', () => {
  const good = '[program:w]\ncommand=/usr/bin/node /opt/w.js\nstopasgroup=true\nkillasgroup=true\nstopwaitsecs=60\n';

  it('accepts a good program', () => {
    expect(messages(lintSupervisor(good))).toEqual([]);
  });

  it('reports keys supervisor does not have, with a hint for limits', () => {
    const text = messages(lintSupervisor(`${good}memory_limit=8GB\nMemoryMax=8G\ncpu_quota=200%\n`)).join('\n');
    expect(text).toMatch(/unknown key memory_limit=.*no memory, CPU or file limit options/);
    expect(text).toMatch(/unknown key memorymax=/);
    expect(text).toMatch(/unknown key cpu_quota=/);
  });

  it('reports inline comments (supervisor cuts the value at " ;")', () => {
    expect(messages(lintSupervisor(good.replace('/opt/w.js', '/opt/w.js ; the worker'))).join()).toMatch(/inline comment in command=/);
    expect(messages(lintSupervisor(good.replace('stopwaitsecs=60', 'stopwaitsecs=60 # a minute'))).join()).toMatch(
      /inline comment in stopwaitsecs=/,
    );
  });

  it('reports duplicates, bad values, a lone % and foreign sections', () => {
    const text = messages(
      lintSupervisor(
        `${good}stopwaitsecs=30\nautorestart=sometimes\nenvironment=A="50%"\n[supervisord]\nnodaemon=true\n[program:x]\nuser=a\n`,
      ),
    ).join('\n');
    expect(text).toMatch(/stopwaitsecs= set twice/);
    expect(text).toMatch(/autorestart=sometimes/);
    expect(text).toMatch(/lone "%"/);
    expect(text).toMatch(/\[supervisord\]: this file is an include/);
    expect(text).toMatch(/\[program:x\] has no command=/);
  });
});

describe('the env file and Redis lint', () => {
  it('reports an inline comment in the env file', () => {
    expect(messages(lintEnvFile('PORT=8080 # http\n')).join()).toMatch(/inline comment in PORT=/);
    expect(messages(lintEnvFile('# comment\nREDIS_URL=redis://h:6379/0\n'))).toEqual([]);
  });

  it('requires noeviction and appendonly', () => {
    expect(
      lintRedisConf('maxmemory-policy allkeys-lru\n')
        .map((p) => p.message)
        .join(),
    ).toMatch(/noeviction.*appendonly/s);
  });
});

describe('the allow-lists are real', () => {
  it('no key is both allowed and deprecated', () => {
    for (const set of Object.values(SYSTEMD_KEYS)) for (const k of Object.keys(SYSTEMD_DEPRECATED)) expect(set.has(k), k).toBe(false);
  });

  const coreLib = [
    '/usr/lib/x86_64-linux-gnu/systemd',
    '/usr/lib/aarch64-linux-gnu/systemd',
    '/usr/lib/systemd',
    '/lib/systemd',
    '/usr/lib64/systemd',
  ]
    .filter((d) => existsSync(d))
    .flatMap((d) =>
      readdirSync(d)
        .filter((f) => /^libsystemd-core-\d+\.so$/.test(f))
        .map((f) => join(d, f)),
    )[0];

  it.skipIf(!coreLib)("every allowed systemd key is in systemd's own directive table (this machine's libsystemd-core)", () => {
    const bin = readFileSync(coreLib!);
    const missing: string[] = [];
    for (const [section, keys] of Object.entries(SYSTEMD_KEYS))
      for (const k of keys) if (!bin.includes(`${section}.${k}\0`)) missing.push(`${section}.${k}`);
    expect(missing).toEqual([]);
  });

  const supervisorOptions = ['/usr/lib/python3/dist-packages/supervisor/options.py'].find((p) => existsSync(p));

  it.skipIf(!supervisorOptions)("every allowed supervisor key is read by supervisor (this machine's options.py)", () => {
    const src = readFileSync(supervisorOptions!, 'utf8');
    const missing = [...SUPERVISOR_PROGRAM_KEYS].filter(
      (k) => !src.includes(`'${k}'`) && !src.includes(`'%s_${k.replace(/^std(out|err)_/, '')}'`),
    );
    expect(missing).toEqual([]);
  });
});

const hasAnalyze = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' }).status === 0;

describe.skipIf(!hasAnalyze)('systemd-analyze verify (when this machine has it)', () => {
  const verify = (files: string[]): string => {
    const r = spawnSync('systemd-analyze', ['verify', '--man=no', ...files], { encoding: 'utf8', timeout: 30_000 });
    return `${r.stdout}\n${r.stderr}`;
  };

  it('finds nothing wrong in our units', () => {
    const out = verify([join(deploy, 'systemd/photoenhance-gateway.service'), join(deploy, 'systemd/photoenhance-worker.service')]);
    expect(out).not.toMatch(/Unknown key|Unknown section|Invalid|Failed to parse|ignoring/i);
  });

  it('agrees with the lint on a bad unit: an inline comment voids the limit, an invented key is dropped', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pe-verify-'));
    try {
      const file = join(dir, 'bad.service');
      writeFileSync(file, GOOD_WORKER.replace('MemoryMax=18G', 'MemoryMax=18G # two engines\nMaxMemory=8G'));
      const out = verify([file]);
      expect(out).toMatch(/MemoryMax|memory limit/i);
      expect(out).toMatch(/MaxMemory/);
      expect(messages(lintSystemdUnit(readFileSync(file, 'utf8'))).join('\n')).toMatch(
        /inline comment in MemoryMax=[\s\S]*unknown key MaxMemory=/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

const supervisorPython =
  existsSync('/usr/bin/python3') && spawnSync('/usr/bin/python3', ['-c', 'import supervisor.options'], { encoding: 'utf8' }).status === 0;

describe.skipIf(!supervisorPython)('supervisor itself (when this machine has it)', () => {
  it('reads our file as written: commands whole, group signals on', () => {
    const script = `
import sys, io, json
from supervisor.options import ServerOptions
body = sys.stdin.read().replace('user=photoenhance', '').replace('/var/log/photoenhance', sys.argv[1])
o = ServerOptions()
o.configfile = io.StringIO('[supervisord]\\nlogfile=' + sys.argv[1] + '/d.log\\n' + body)
o.realize(args=[])
print(json.dumps({p.name: {'command': p.command, 'stopasgroup': p.stopasgroup, 'killasgroup': p.killasgroup, 'stopwaitsecs': p.stopwaitsecs}
                  for g in o.process_group_configs for p in g.process_configs}))
`;
    const dir = mkdtempSync(join(tmpdir(), 'pe-supervisor-'));
    try {
      const r = spawnSync('/usr/bin/python3', ['-c', script, dir], {
        input: read('supervisor/photoenhance.conf'),
        encoding: 'utf8',
        timeout: 30_000,
      });
      expect(r.status, r.stderr).toBe(0);
      const parsed = JSON.parse(r.stdout) as Record<
        string,
        { command: string; stopasgroup: boolean; killasgroup: boolean; stopwaitsecs: number }
      >;
      expect(parsed['photoenhance-worker']).toEqual({
        command: '/usr/bin/node /opt/photoenhance/apps/cli/bin/photoenhance.js worker',
        stopasgroup: true,
        killasgroup: true,
        stopwaitsecs: 120,
      });
      expect(parsed['photoenhance-gateway']?.command).toBe('/usr/bin/node /opt/photoenhance/apps/cli/bin/photoenhance.js gateway');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
