/**
 * Lint for the deployment files under deploy/: systemd units, the systemd environment file, the Redis snippet and the
 * supervisor program file.
 *
 * Why it exists: systemd and supervisor both accept a mistyped file quietly. systemd logs "Unknown key ..., ignoring"
 * and runs the unit without the limit; `MemoryMax=8G # note` is not 8G (systemd has no inline comments) and the line is
 * dropped; supervisor ignores keys it does not know (`memory_limit=` limits nothing) and cuts a value at ` ;`.
 *
 * CLI: `node --import tsx deploy/lint.ts deploy/` (exit status 1 when a problem is found).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';

export interface Problem {
  line: number;
  message: string;
}

export interface Entry {
  key: string;
  value: string;
  line: number;
}

export interface Section {
  name: string;
  line: number;
  entries: Entry[];
}

export interface ParsedIni {
  sections: Section[];
  problems: Problem[];
}

const words = (s: string): string[] => s.split(/\s+/).filter(Boolean);

// ---------------------------------------------------------------------------------------------------------------------
// Allow-lists. systemd: the [Unit], [Service] and [Install] directives of systemd 252 (systemd.unit(5), systemd.service(5),
// systemd.exec(5), systemd.kill(5), systemd.resource-control(5)), i.e. the "Unit.*", "Service.*" and "Install.*" entries of
// its load-fragment table, less the obsolete spellings listed in SYSTEMD_DEPRECATED.

export const SYSTEMD_KEYS: Record<'Unit' | 'Service' | 'Install', ReadonlySet<string>> = {
  Unit: new Set(
    words(`
  After AllowIsolate AssertACPower AssertArchitecture AssertCPUFeature AssertCPUPressure AssertCPUs AssertCapability
  AssertControlGroupController AssertCredential AssertDirectoryNotEmpty AssertEnvironment AssertFileIsExecutable
  AssertFileNotEmpty AssertFirstBoot AssertGroup AssertHost AssertIOPressure AssertKernelCommandLine
  AssertKernelVersion AssertMemory AssertMemoryPressure AssertNeedsUpdate AssertOSRelease AssertPathExists
  AssertPathExistsGlob AssertPathIsDirectory AssertPathIsEncrypted AssertPathIsMountPoint AssertPathIsReadWrite
  AssertPathIsSymbolicLink AssertSecurity AssertUser AssertVirtualization Before BindsTo CollectMode
  ConditionACPower ConditionArchitecture ConditionCPUFeature ConditionCPUPressure ConditionCPUs ConditionCapability
  ConditionControlGroupController ConditionCredential ConditionDirectoryNotEmpty ConditionEnvironment
  ConditionFileIsExecutable ConditionFileNotEmpty ConditionFirmware ConditionFirstBoot ConditionGroup ConditionHost
  ConditionIOPressure ConditionKernelCommandLine ConditionKernelVersion ConditionMemory ConditionMemoryPressure
  ConditionNeedsUpdate ConditionOSRelease ConditionPathExists ConditionPathExistsGlob ConditionPathIsDirectory
  ConditionPathIsEncrypted ConditionPathIsMountPoint ConditionPathIsReadWrite ConditionPathIsSymbolicLink
  ConditionSecurity ConditionUser ConditionVirtualization Conflicts DefaultDependencies Description Documentation
  FailureAction FailureActionExitStatus IgnoreOnIsolate JobRunningTimeoutSec JobTimeoutAction
  JobTimeoutRebootArgument JobTimeoutSec JoinsNamespaceOf OnFailure OnFailureIsolate OnFailureJobMode OnSuccess
  OnSuccessJobMode PartOf PropagatesReloadTo PropagatesStopTo RebootArgument
  RefuseManualStart RefuseManualStop ReloadPropagatedFrom Requires RequiresMountsFor Requisite
  SourcePath StartLimitAction StartLimitBurst StartLimitIntervalSec
  StopPropagatedFrom StopWhenUnneeded SuccessAction SuccessActionExitStatus Upholds Wants
`),
  ),
  Service: new Set(
    words(`
  AllowedCPUs AllowedMemoryNodes AmbientCapabilities AppArmorProfile BPFProgram BindPaths BindReadOnlyPaths
  BusName CPUAccounting CPUAffinity CPUQuota CPUQuotaPeriodSec CPUSchedulingPolicy CPUSchedulingPriority
  CPUSchedulingResetOnFork CPUWeight CacheDirectory CacheDirectoryMode CapabilityBoundingSet
  ConfigurationDirectory ConfigurationDirectoryMode CoredumpFilter DefaultMemoryLow DefaultMemoryMin Delegate
  DeviceAllow DevicePolicy DisableControllers DynamicUser Environment EnvironmentFile ExecCondition ExecPaths
  ExecReload ExecSearchPath ExecStart ExecStartPost ExecStartPre ExecStop ExecStopPost ExitType ExtensionDirectories
  ExtensionImages FileDescriptorStoreMax FinalKillSignal Group GuessMainPID IOAccounting
  IODeviceLatencyTargetSec IODeviceWeight IOReadBandwidthMax IOReadIOPSMax IOSchedulingClass IOSchedulingPriority
  IOWeight IOWriteBandwidthMax IOWriteIOPSMax IPAccounting IPAddressAllow IPAddressDeny IPCNamespacePath
  IPEgressFilterPath IPIngressFilterPath IgnoreSIGPIPE InaccessiblePaths KeyringMode KillMode
  KillSignal LimitAS LimitCORE LimitCPU LimitDATA LimitFSIZE LimitLOCKS LimitMEMLOCK LimitMSGQUEUE LimitNICE
  LimitNOFILE LimitNPROC LimitRSS LimitRTPRIO LimitRTTIME LimitSIGPENDING LimitSTACK LoadCredential
  LoadCredentialEncrypted LockPersonality LogExtraFields LogLevelMax LogNamespace LogRateLimitBurst
  LogRateLimitIntervalSec LogsDirectory LogsDirectoryMode ManagedOOMMemoryPressure ManagedOOMMemoryPressureLimit
  ManagedOOMPreference ManagedOOMSwap MemoryAccounting MemoryDenyWriteExecute MemoryHigh MemoryLow
  MemoryMax MemoryMin MemorySwapMax MountAPIVFS MountFlags MountImages NUMAMask NUMAPolicy
  NetworkNamespacePath Nice NoExecPaths NoNewPrivileges NonBlocking NotifyAccess OOMPolicy OOMScoreAdjust PAMName
  PIDFile PassEnvironment Personality PrivateDevices PrivateIPC PrivateMounts PrivateNetwork
  PrivateTmp PrivateUsers ProcSubset ProtectClock ProtectControlGroups ProtectHome ProtectHostname ProtectKernelLogs
  ProtectKernelModules ProtectKernelTunables ProtectProc ProtectSystem ReadOnlyPaths
  ReadWritePaths RemainAfterExit RemoveIPC Restart RestartForceExitStatus
  RestartKillSignal RestartPreventExitStatus RestartSec RestrictAddressFamilies RestrictFileSystems
  RestrictNamespaces RestrictNetworkInterfaces RestrictRealtime RestrictSUIDSGID RootDirectory RootDirectoryStartOnly
  RootHash RootHashSignature RootImage RootImageOptions RootVerity RuntimeDirectory RuntimeDirectoryMode
  RuntimeDirectoryPreserve RuntimeMaxSec RuntimeRandomizedExtraSec SELinuxContext SecureBits SendSIGHUP SendSIGKILL
  SetCredential SetCredentialEncrypted Slice SmackProcessLabel SocketBindAllow SocketBindDeny Sockets StandardError
  StandardInput StandardInputData StandardInputText StandardOutput
  StartupAllowedCPUs StartupAllowedMemoryNodes StartupCPUWeight StartupIOWeight StateDirectory StateDirectoryMode
  SuccessExitStatus SupplementaryGroups SyslogFacility SyslogIdentifier SyslogLevel SyslogLevelPrefix
  SystemCallArchitectures SystemCallErrorNumber SystemCallFilter SystemCallLog TTYColumns TTYPath TTYReset TTYRows
  TTYVHangup TTYVTDisallocate TasksAccounting TasksMax TemporaryFileSystem TimeoutAbortSec TimeoutCleanSec TimeoutSec
  TimeoutStartFailureMode TimeoutStartSec TimeoutStopFailureMode TimeoutStopSec TimerSlackNSec Type UMask
  USBFunctionDescriptors USBFunctionStrings UnsetEnvironment User UtmpIdentifier UtmpMode WatchdogSec WatchdogSignal
  WorkingDirectory
`),
  ),
  Install: new Set(words('Alias Also DefaultInstance RequiredBy WantedBy')),
};

/** Real but newer than systemd 252; accepted, with the version that added them (older systemd ignores them). */
export const SYSTEMD_NEWER_KEYS: Record<string, { section: 'Unit' | 'Service'; since: number }> = {
  MemoryZSwapMax: { section: 'Service', since: 253 },
  OpenFile: { section: 'Service', since: 253 },
  DelegateSubgroup: { section: 'Service', since: 254 },
  RestartMode: { section: 'Service', since: 254 },
  RestartSteps: { section: 'Service', since: 254 },
  RestartMaxDelaySec: { section: 'Service', since: 254 },
};

/** Spellings systemd still parses (with a warning) or has dropped; each with what to write instead. */
export const SYSTEMD_DEPRECATED: Record<string, string> = {
  MemoryLimit: 'MemoryLimit= is the cgroup v1 name; use MemoryMax=',
  CPUShares: 'CPUShares= is the cgroup v1 name; use CPUWeight=',
  StartupCPUShares: 'use StartupCPUWeight=',
  BlockIOAccounting: 'use IOAccounting=',
  BlockIOWeight: 'use IOWeight=',
  StartupBlockIOWeight: 'use StartupIOWeight=',
  BlockIODeviceWeight: 'use IODeviceWeight=',
  BlockIOReadBandwidth: 'use IOReadBandwidthMax=',
  BlockIOWriteBandwidth: 'use IOWriteBandwidthMax=',
  ReadOnlyDirectories: 'use ReadOnlyPaths=',
  ReadWriteDirectories: 'use ReadWritePaths=',
  InaccessibleDirectories: 'use InaccessiblePaths=',
  PermissionsStartOnly: 'use the "+" prefix on the Exec line that needs privileges',
  StartLimitInterval: 'use StartLimitIntervalSec= in [Unit]',
  BindTo: 'use BindsTo=',
  PropagateReloadTo: 'use PropagatesReloadTo=',
  PropagateReloadFrom: 'use ReloadPropagatedFrom=',
  RequiresOverridable: 'removed; use Requires=',
  RequisiteOverridable: 'removed; use Requisite=',
  IgnoreOnSnapshot: 'removed (snapshot units are gone)',
  Capabilities: 'removed; use AmbientCapabilities= / CapabilityBoundingSet=',
  SysVStartPriority: 'removed',
  BusPolicy: 'removed',
  NetClass: 'removed',
};

/** In [Service], systemd still reads these for compatibility; they belong in [Unit]. */
const SERVICE_KEYS_THAT_BELONG_IN_UNIT = new Set([
  'StartLimitBurst',
  'StartLimitAction',
  'StartLimitIntervalSec',
  'FailureAction',
  'RebootArgument',
]);

/** Directives that form lists: repeating them appends (an empty assignment resets). Any other key set twice is a mistake. */
const SYSTEMD_REPEATABLE = new Set(
  words(`
  After Before Wants Requires Requisite BindsTo PartOf Upholds Conflicts OnFailure OnSuccess Documentation
  PropagatesReloadTo ReloadPropagatedFrom PropagatesStopTo StopPropagatedFrom JoinsNamespaceOf RequiresMountsFor
  Environment EnvironmentFile PassEnvironment UnsetEnvironment
  ExecStart ExecStartPre ExecStartPost ExecCondition ExecReload ExecStop ExecStopPost
  ReadWritePaths ReadOnlyPaths InaccessiblePaths ExecPaths NoExecPaths BindPaths BindReadOnlyPaths TemporaryFileSystem
  SupplementaryGroups DeviceAllow IPAddressAllow IPAddressDeny SystemCallFilter SystemCallLog RestrictAddressFamilies
  RestrictFileSystems RestrictNetworkInterfaces CapabilityBoundingSet AmbientCapabilities LoadCredential
  LoadCredentialEncrypted SetCredential SetCredentialEncrypted RuntimeDirectory StateDirectory CacheDirectory
  LogsDirectory ConfigurationDirectory SuccessExitStatus RestartPreventExitStatus RestartForceExitStatus
  IOReadBandwidthMax IOWriteBandwidthMax IOReadIOPSMax IOWriteIOPSMax IODeviceWeight IODeviceLatencyTargetSec
  SocketBindAllow SocketBindDeny LogExtraFields BPFProgram MountImages ExtensionImages ExtensionDirectories Sockets
  WantedBy RequiredBy Alias Also OpenFile
`),
);
const isRepeatable = (key: string): boolean => SYSTEMD_REPEATABLE.has(key) || /^(Condition|Assert)/.test(key);

// supervisor: the options of a [program:x] section (supervisord.org/configuration.html; supervisor/options.py
// processes_from_section), and of [group:x].
export const SUPERVISOR_PROGRAM_KEYS: ReadonlySet<string> = new Set(
  words(`
  command process_name numprocs numprocs_start priority autostart startsecs startretries autorestart exitcodes
  stopsignal stopwaitsecs stopasgroup killasgroup user redirect_stderr
  stdout_logfile stdout_logfile_maxbytes stdout_logfile_backups stdout_capture_maxbytes stdout_events_enabled stdout_syslog
  stderr_logfile stderr_logfile_maxbytes stderr_logfile_backups stderr_capture_maxbytes stderr_events_enabled stderr_syslog
  environment directory umask serverurl
`),
);
export const SUPERVISOR_GROUP_KEYS: ReadonlySet<string> = new Set(['programs', 'priority']);

// ---------------------------------------------------------------------------------------------------------------------
// Parsing

/** A `#` or `;` after whitespace inside a value: a comment in the writer's mind, part of the value for systemd. */
const INLINE_COMMENT = /\s[#;]/;

/**
 * systemd.syntax(7): `[Section]`, `Key=Value`, whole-line comments starting with `#` or `;`, a trailing backslash joins the
 * next line (comment lines inside a continuation are skipped). There are no inline comments.
 */
export function parseSystemd(text: string): ParsedIni {
  const sections: Section[] = [];
  const problems: Problem[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const raw = lines[i]!.trim();
    if (raw === '' || raw.startsWith('#') || raw.startsWith(';')) continue;
    if (raw.startsWith('[')) {
      const m = /^\[([^\]]+)\]$/.exec(raw);
      if (!m) problems.push({ line: lineNo, message: `malformed section header ${JSON.stringify(raw)}` });
      else sections.push({ name: m[1]!, line: lineNo, entries: [] });
      continue;
    }
    let logical = raw;
    while (logical.endsWith('\\') && i + 1 < lines.length) {
      i++;
      const next = lines[i]!.trim();
      if (next.startsWith('#') || next.startsWith(';')) {
        logical = `${logical.slice(0, -1)}\\`;
        continue;
      }
      logical = `${logical.slice(0, -1)} ${next}`;
    }
    const eq = logical.indexOf('=');
    if (eq <= 0) {
      problems.push({ line: lineNo, message: `not a Key=Value line: ${JSON.stringify(raw)}` });
      continue;
    }
    const section = sections.at(-1);
    if (!section) {
      problems.push({ line: lineNo, message: `assignment before any [Section]: ${JSON.stringify(raw)}` });
      continue;
    }
    section.entries.push({ key: logical.slice(0, eq).trim(), value: logical.slice(eq + 1).trim(), line: lineNo });
  }
  return { sections, problems };
}

/**
 * supervisor reads its files with Python's configparser: `[section]`, `key=value` or `key: value`, whole-line comments with
 * `;` or `#`, indented lines continue the previous value, and ` ;` (whitespace then semicolon) starts an inline comment
 * that silently cuts the value. Option names are case-insensitive.
 */
export function parseSupervisor(text: string): ParsedIni {
  const sections: Section[] = [];
  const problems: Problem[] = [];
  const lines = text.split(/\r?\n/);
  let last: Entry | undefined;
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const line = lines[i]!;
    const raw = line.trim();
    if (raw === '' || raw.startsWith('#') || raw.startsWith(';')) {
      last = undefined;
      continue;
    }
    if (/^\s/.test(line) && last) {
      last.value = `${last.value}\n${raw}`;
      continue;
    }
    if (raw.startsWith('[')) {
      const m = /^\[([^\]]+)\]$/.exec(raw);
      if (!m) problems.push({ line: lineNo, message: `malformed section header ${JSON.stringify(raw)}` });
      else sections.push({ name: m[1]!, line: lineNo, entries: [] });
      last = undefined;
      continue;
    }
    const m = /^([^=:]+?)\s*[=:]\s*(.*)$/.exec(raw);
    const section = sections.at(-1);
    if (!m) {
      problems.push({ line: lineNo, message: `not a key=value line: ${JSON.stringify(raw)}` });
      continue;
    }
    if (!section) {
      problems.push({ line: lineNo, message: `assignment before any [section]: ${JSON.stringify(raw)}` });
      continue;
    }
    last = { key: m[1]!.toLowerCase(), value: m[2]!, line: lineNo };
    section.entries.push(last);
  }
  return { sections, problems };
}

// ---------------------------------------------------------------------------------------------------------------------
// Value checks

const SYSTEMD_BOOL = /^(1|yes|y|true|t|on|0|no|n|false|f|off)$/;
/** systemd.resource-control(5): bytes with an optional K, M, G, T, P or E suffix (base 1024), a percentage, or infinity. */
const SYSTEMD_MEMORY = /^(infinity|\d+(\.\d+)?\s*[KMGTPE]?|\d+(\.\d+)?%)$/;
/** systemd.time(7) time spans: "90", "90s", "2min 30s", "1h", "500ms", or infinity. */
const SYSTEMD_TIMESPAN =
  /^(infinity|(\d+(\.\d+)?\s*(usec|us|µs|msec|ms|seconds|second|sec|s|minutes|minute|min|m|hours|hour|hr|h|days|day|d|weeks|week|w|months|month|M|years|year|y)?\s*)+)$/;

/** Bytes for a systemd memory value; `infinity` → Infinity; a percentage → undefined (depends on the host). */
export function systemdBytes(v: string): number | undefined {
  if (v === 'infinity') return Infinity;
  const m = /^(\d+(?:\.\d+)?)\s*([KMGTPE]?)$/.exec(v);
  if (!m) return undefined;
  return Number(m[1]) * 1024 ** ' KMGTPE'.indexOf(m[2] || ' ');
}

/** Seconds for a systemd time span (a bare number is seconds). */
export function systemdSeconds(v: string): number | undefined {
  if (v === 'infinity') return Infinity;
  if (!SYSTEMD_TIMESPAN.test(v)) return undefined;
  const unit: Record<string, number> = {
    us: 1e-6,
    usec: 1e-6,
    µs: 1e-6,
    ms: 1e-3,
    msec: 1e-3,
    s: 1,
    sec: 1,
    second: 1,
    seconds: 1,
    m: 60,
    min: 60,
    minute: 60,
    minutes: 60,
    h: 3600,
    hr: 3600,
    hour: 3600,
    hours: 3600,
    d: 86400,
    day: 86400,
    days: 86400,
    w: 604800,
    week: 604800,
    weeks: 604800,
    M: 2629800,
    month: 2629800,
    months: 2629800,
    y: 31557600,
    year: 31557600,
    years: 31557600,
  };
  let total = 0;
  for (const m of v.matchAll(/(\d+(?:\.\d+)?)\s*([a-zA-Zµ]*)/g)) total += Number(m[1]) * (unit[m[2] || 's'] ?? NaN);
  return Number.isFinite(total) ? total : undefined;
}

function checkSystemdValue(key: string, value: string): string | undefined {
  if (
    [
      'MemoryMax',
      'MemoryHigh',
      'MemoryLow',
      'MemoryMin',
      'MemorySwapMax',
      'MemoryZSwapMax',
      'DefaultMemoryLow',
      'DefaultMemoryMin',
    ].includes(key)
  ) {
    if (!SYSTEMD_MEMORY.test(value))
      return `${key}=${value} is not a size: use bytes with K, M, G or T (base 1024, e.g. 24G, 512M), a percentage (90%) or infinity; "GiB"/"MB" spellings are not accepted`;
    if (value.endsWith('%') && Number(value.slice(0, -1)) > 100) return `${key}=${value}: a percentage above 100%`;
  }
  if (key === 'CPUQuota' && !/^\d+(\.\d+)?%$/.test(value))
    return `CPUQuota=${value} must be a percentage of one CPU (e.g. 200% = two cores)`;
  if (key === 'TasksMax' && !/^(infinity|\d+|\d+(\.\d+)?%)$/.test(value))
    return `TasksMax=${value} must be a number, a percentage or infinity`;
  if (/^Limit[A-Z]+$/.test(key) && !/^(infinity|\d+[KMGTPE]?)(:(infinity|\d+[KMGTPE]?))?$/.test(value))
    return `${key}=${value} must be a number, infinity or soft:hard`;
  if (
    [
      'NoNewPrivileges',
      'PrivateTmp',
      'PrivateDevices',
      'ProtectControlGroups',
      'ProtectKernelTunables',
      'ProtectKernelModules',
      'RestrictRealtime',
      'RestrictSUIDSGID',
      'LockPersonality',
      'MemoryDenyWriteExecute',
      'RemainAfterExit',
      'DefaultDependencies',
      'MemoryAccounting',
      'CPUAccounting',
      'TasksAccounting',
    ].includes(key) &&
    !SYSTEMD_BOOL.test(value)
  ) {
    return `${key}=${value} must be a boolean (yes/no)`;
  }
  if (
    key === 'Delegate' &&
    !SYSTEMD_BOOL.test(value) &&
    !/^(cpu|cpuacct|cpuset|io|blkio|memory|devices|pids|bpf-firewall|bpf-devices|bpf-foreign|bpf-socket-bind|bpf-restrict-network-interfaces)( +(cpu|cpuacct|cpuset|io|blkio|memory|devices|pids|bpf-firewall|bpf-devices|bpf-foreign|bpf-socket-bind|bpf-restrict-network-interfaces))*$/.test(
      value,
    )
  ) {
    return `Delegate=${value} must be a boolean or a list of cgroup controllers`;
  }
  if (
    /^Timeout(Start|Stop|Abort)?Sec$|^RestartSec$|^RuntimeMaxSec$|^WatchdogSec$|^StartLimitIntervalSec$/.test(key) &&
    !SYSTEMD_TIMESPAN.test(value)
  )
    return `${key}=${value} is not a time span`;
  if (key === 'KillMode' && !['control-group', 'mixed', 'process', 'none'].includes(value))
    return `KillMode=${value} must be control-group, mixed, process or none`;
  if (key === 'Restart' && !['no', 'on-success', 'on-failure', 'on-abnormal', 'on-watchdog', 'on-abort', 'always'].includes(value))
    return `Restart=${value} is not a restart policy`;
  if (key === 'OOMPolicy' && !['continue', 'stop', 'kill'].includes(value)) return `OOMPolicy=${value} must be continue, stop or kill`;
  if (key === 'Type' && !['simple', 'exec', 'forking', 'oneshot', 'dbus', 'notify', 'notify-reload', 'idle'].includes(value))
    return `Type=${value} is not a service type`;
  if (key === 'ProtectSystem' && !SYSTEMD_BOOL.test(value) && !['full', 'strict'].includes(value))
    return `ProtectSystem=${value} must be yes, no, full or strict`;
  if (key === 'ProtectHome' && !SYSTEMD_BOOL.test(value) && !['read-only', 'tmpfs'].includes(value))
    return `ProtectHome=${value} must be yes, no, read-only or tmpfs`;
  if (/^Exec/.test(key) && key !== 'ExecSearchPath' && key !== 'ExecPaths' && value !== '' && !/^[-@:+!]*\//.test(value))
    return `${key}= must start with an absolute path to the executable; received ${JSON.stringify(value)}`;
  if (key === 'WorkingDirectory' && !/^-?(\/|~$)/.test(value)) return `WorkingDirectory= must be an absolute path`;
  return undefined;
}

// ---------------------------------------------------------------------------------------------------------------------
// Lint

export function lintSystemdUnit(text: string): Problem[] {
  const { sections, problems } = parseSystemd(text);
  const seenSections = new Set<string>();
  for (const section of sections) {
    if (seenSections.has(section.name)) problems.push({ line: section.line, message: `[${section.name}] appears twice` });
    seenSections.add(section.name);
    const known = SYSTEMD_KEYS[section.name as keyof typeof SYSTEMD_KEYS] as ReadonlySet<string> | undefined;
    if (!known) {
      problems.push({
        line: section.line,
        message: `unknown section [${section.name}] (a .service file has [Unit], [Service], [Install])`,
      });
      continue;
    }
    const seen = new Map<string, number>();
    for (const { key, value, line } of section.entries) {
      if (INLINE_COMMENT.test(value)) {
        problems.push({
          line,
          message: `inline comment in ${key}=: systemd has no inline comments, the whole text "${value}" is the value; put the comment on its own line`,
        });
      }
      const newer = SYSTEMD_NEWER_KEYS[key];
      if (key in SYSTEMD_DEPRECATED) problems.push({ line, message: `${key}= is deprecated or removed: ${SYSTEMD_DEPRECATED[key]}` });
      else if (section.name === 'Service' && SERVICE_KEYS_THAT_BELONG_IN_UNIT.has(key))
        problems.push({ line, message: `${key}= belongs in [Unit]` });
      else if (!known.has(key) && !(newer && newer.section === section.name))
        problems.push({ line, message: `unknown key ${key}= in [${section.name}] (systemd would log "Unknown key" and ignore it)` });
      const first = seen.get(key);
      if (first !== undefined && !isRepeatable(key))
        problems.push({ line, message: `${key}= set twice (lines ${first} and ${line}); the later silently wins` });
      if (first === undefined) seen.set(key, line);
      if (!INLINE_COMMENT.test(value)) {
        const bad = checkSystemdValue(key, value);
        if (bad) problems.push({ line, message: bad });
      }
    }
  }
  return problems.sort((a, b) => a.line - b.line);
}

const SUPERVISOR_BOOL = /^(true|false|yes|no|on|off|1|0)$/i;
const SUPERVISOR_SIGNALS = new Set(['TERM', 'HUP', 'INT', 'QUIT', 'KILL', 'USR1', 'USR2']);

function checkSupervisorValue(key: string, value: string): string | undefined {
  if (/%(?!%|\([A-Za-z_][A-Za-z0-9_]*\)[sd])/.test(value.replace(/%%/g, '')))
    return `${key}: a lone "%" (supervisor expands %(name)s; write %% for a literal percent sign)`;
  if (
    [
      'autostart',
      'stopasgroup',
      'killasgroup',
      'redirect_stderr',
      'stdout_events_enabled',
      'stderr_events_enabled',
      'stdout_syslog',
      'stderr_syslog',
    ].includes(key) &&
    !SUPERVISOR_BOOL.test(value)
  )
    return `${key}=${value} must be true or false`;
  if (key === 'autorestart' && !/^(true|false|unexpected)$/i.test(value)) return `autorestart=${value} must be true, false or unexpected`;
  if (
    [
      'startsecs',
      'startretries',
      'stopwaitsecs',
      'numprocs',
      'numprocs_start',
      'priority',
      'stdout_logfile_backups',
      'stderr_logfile_backups',
    ].includes(key) &&
    !/^\d+$/.test(value)
  )
    return `${key}=${value} must be a whole number`;
  if (/_maxbytes$/.test(key) && !/^\d+(KB|MB|GB)?$/i.test(value)) return `${key}=${value} must be bytes, optionally with KB, MB or GB`;
  if (key === 'stopsignal' && !SUPERVISOR_SIGNALS.has(value.toUpperCase().replace(/^SIG/, '')))
    return `stopsignal=${value} must be one of ${[...SUPERVISOR_SIGNALS].join(', ')}`;
  if (
    key === 'environment' &&
    !/^([A-Za-z_][A-Za-z0-9_]*=("[^"]*"|[^,"]*))(,\s*[A-Za-z_][A-Za-z0-9_]*=("[^"]*"|[^,"]*))*$/.test(value.replace(/\n/g, ''))
  )
    return `environment= must be KEY="value",KEY2="value2"`;
  if (key === 'command' && !value.startsWith('/') && !value.startsWith('%(')) return `command= should start with an absolute path`;
  return undefined;
}

export function lintSupervisor(text: string): Problem[] {
  const { sections, problems } = parseSupervisor(text);
  for (const section of sections) {
    const kind = /^(program|group):[A-Za-z0-9_.-]+$/.exec(section.name)?.[1];
    if (!kind) {
      problems.push({
        line: section.line,
        message: `[${section.name}]: this file is an include for supervisord (conf.d); it holds only [program:x] and [group:x] sections`,
      });
      continue;
    }
    const known = kind === 'program' ? SUPERVISOR_PROGRAM_KEYS : SUPERVISOR_GROUP_KEYS;
    const seen = new Map<string, number>();
    for (const { key, value, line } of section.entries) {
      if (INLINE_COMMENT.test(value))
        problems.push({
          line,
          message: `inline comment in ${key}=: supervisor cuts the value at " ;" and keeps " #"; put the comment on its own line`,
        });
      if (!known.has(key)) {
        const hint = /mem|rss|cpu|limit|quota|nofile|rlimit/.test(key) ? ' (supervisor has no memory, CPU or file limit options)' : '';
        problems.push({ line, message: `unknown key ${key}= in [${section.name}]${hint}` });
      }
      const first = seen.get(key);
      if (first !== undefined) problems.push({ line, message: `${key}= set twice (lines ${first} and ${line})` });
      else seen.set(key, line);
      if (!INLINE_COMMENT.test(value)) {
        const bad = checkSupervisorValue(key, value);
        if (bad) problems.push({ line, message: bad });
      }
    }
    if (kind === 'program' && !seen.has('command')) problems.push({ line: section.line, message: `[${section.name}] has no command=` });
  }
  return problems.sort((a, b) => a.line - b.line);
}

/** systemd EnvironmentFile= (systemd.exec(5)): KEY=VALUE lines, whole-line comments only. */
export function lintEnvFile(text: string): Problem[] {
  const problems: Problem[] = [];
  const seen = new Map<string, number>();
  text.split(/\r?\n/).forEach((l, i) => {
    const line = i + 1;
    const raw = l.trim();
    if (raw === '' || raw.startsWith('#') || raw.startsWith(';')) return;
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(raw);
    if (!m) {
      problems.push({ line, message: `not a KEY=VALUE line: ${JSON.stringify(raw)}` });
      return;
    }
    const [, key, value] = m as unknown as [string, string, string];
    if (!/^(".*"|'.*')$/.test(value) && INLINE_COMMENT.test(value))
      problems.push({ line, message: `inline comment in ${key}=: it becomes part of the value` });
    const first = seen.get(key);
    if (first !== undefined) problems.push({ line, message: `${key} set twice (lines ${first} and ${line})` });
    else seen.set(key, line);
  });
  return problems;
}

/** redis.conf (a snippet to include): `directive args`, whole-line `#` comments; BullMQ needs noeviction and persistence. */
export function lintRedisConf(text: string): Problem[] {
  const problems: Problem[] = [];
  const settings = new Map<string, string>();
  text.split(/\r?\n/).forEach((l, i) => {
    const raw = l.trim();
    if (raw === '' || raw.startsWith('#')) return;
    if (raw.includes('#')) problems.push({ line: i + 1, message: 'redis.conf has no inline comments' });
    const [directive = '', ...args] = raw.split(/\s+/);
    settings.set(directive.toLowerCase(), args.join(' '));
  });
  if (settings.get('maxmemory-policy') !== 'noeviction')
    problems.push({ line: 0, message: 'BullMQ needs "maxmemory-policy noeviction" (evicted keys are lost jobs)' });
  if (settings.get('appendonly') !== 'yes')
    problems.push({ line: 0, message: 'set "appendonly yes" so queued jobs survive a Redis restart' });
  return problems;
}

// ---------------------------------------------------------------------------------------------------------------------
// Project policy: what the PhotoEnhance units must say (the list), beyond being well-formed.

export function unitSettings(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const s of parseSystemd(text).sections) for (const e of s.entries) out.set(`${s.name}.${e.key}`, e.value);
  return out;
}

export function checkPhotoenhanceUnit(text: string, role: 'gateway' | 'worker'): Problem[] {
  const s = unitSettings(text);
  const problems: Problem[] = [];
  const need = (key: string, ok: (v: string) => boolean, what: string): void => {
    const v = s.get(`Service.${key}`);
    if (v === undefined) problems.push({ line: 0, message: `${role}: ${key}= is missing (${what})` });
    else if (!ok(v)) problems.push({ line: 0, message: `${role}: ${key}=${v}: ${what}` });
  };
  const any = (): boolean => true;
  const yes = (v: string): boolean => /^(1|yes|y|true|t|on)$/.test(v);
  need('MemoryMax', (v) => SYSTEMD_MEMORY.test(v) && v !== 'infinity', 'a hard memory cap for the unit');
  need('MemoryHigh', (v) => SYSTEMD_MEMORY.test(v), 'a throttling threshold below MemoryMax');
  need('CPUQuota', (v) => /%$/.test(v), 'a CPU cap');
  need('TasksMax', any, 'a cap on processes and threads');
  need('LimitNOFILE', any, 'an open-file limit');
  need('NoNewPrivileges', yes, 'must be yes');
  need('PrivateTmp', yes, 'must be yes');
  need('User', (v) => v === 'photoenhance', 'run as the photoenhance user');
  need('WorkingDirectory', (v) => v.startsWith('/'), 'the checkout: relative paths in the environment resolve from here');
  need(
    'ExecStart',
    (v) => new RegExp(`^/\\S*node /\\S+/apps/cli/bin/photoenhance\\.js ${role}$`).test(v),
    `absolute node path, then the absolute path of apps/cli/bin/photoenhance.js and the role command "${role}"`,
  );
  need('Restart', (v) => v === 'on-failure' || v === 'always', 'restart after a crash');
  const max = systemdBytes(s.get('Service.MemoryMax') ?? '');
  const high = systemdBytes(s.get('Service.MemoryHigh') ?? '');
  if (max !== undefined && high !== undefined && !(high < max))
    problems.push({
      line: 0,
      message: `${role}: MemoryHigh must be below MemoryMax, or the unit is OOM-killed before it is ever throttled`,
    });
  if (role === 'worker') {
    need(
      'Delegate',
      yes,
      'the worker creates a memory cgroup per engine under its own; without Delegate=yes systemd owns (and may undo) that subtree',
    );
    need('KillMode', (v) => v === 'mixed' || v === 'control-group', 'engines must be stopped with the worker');
    need('TimeoutStopSec', (v) => (systemdSeconds(v) ?? 0) >= 30, 'leave the worker time to hand back jobs and stop engines (>= 30s)');
    need('OOMPolicy', (v) => v === 'continue', 'an engine OOM-killed in its own cgroup must not stop the whole worker');
    if (max !== undefined && max < 8 * 1024 ** 3) problems.push({ line: 0, message: 'worker: MemoryMax is below one engine (8 GiB)' });
    if (s.get('Service.ProtectControlGroups') && yes(s.get('Service.ProtectControlGroups')!))
      problems.push({
        line: 0,
        message: 'worker: ProtectControlGroups=yes makes /sys/fs/cgroup read-only; the worker could not create engine cgroups',
      });
    if (s.get('Service.MemoryDenyWriteExecute') && yes(s.get('Service.MemoryDenyWriteExecute')!))
      problems.push({ line: 0, message: 'worker: MemoryDenyWriteExecute=yes breaks the V8 JIT' });
  }
  return problems;
}

// ---------------------------------------------------------------------------------------------------------------------
// Directory walk and CLI

export type FileKind = 'systemd' | 'supervisor' | 'env' | 'redis';

export function kindOf(path: string): FileKind | undefined {
  const name = basename(path);
  if (/\.(service|socket|timer|path|slice|target)$/.test(name)) return 'systemd';
  if (/\.env$/.test(name)) return 'env';
  if (/^redis.*\.conf$/.test(name)) return 'redis';
  if (/\.conf$|\.ini$/.test(name) && /(^|\/)supervisor(\/|$)/.test(path.replace(/\\/g, '/'))) return 'supervisor';
  return undefined;
}

export function lintFile(path: string, text = readFileSync(path, 'utf8')): Problem[] {
  const kind = kindOf(path);
  if (kind === 'systemd') {
    const problems = lintSystemdUnit(text);
    const role = /photoenhance-(gateway|worker)\.service$/.exec(path)?.[1] as 'gateway' | 'worker' | undefined;
    return role ? [...problems, ...checkPhotoenhanceUnit(text, role)] : problems;
  }
  if (kind === 'supervisor') return lintSupervisor(text);
  if (kind === 'env') return lintEnvFile(text);
  if (kind === 'redis') return lintRedisConf(text);
  return [];
}

export function deployFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...deployFiles(p));
    else if (kindOf(p)) out.push(p);
  }
  return out;
}

function main(argv: string[]): number {
  const roots = argv.length ? argv : ['deploy'];
  let count = 0;
  for (const root of roots) {
    const files = statSync(root).isDirectory() ? deployFiles(root) : [root];
    for (const file of files) {
      for (const p of lintFile(file)) {
        count++;
        console.error(`${relative(process.cwd(), file)}:${p.line}: ${p.message}`);
      }
    }
  }
  if (count === 0) console.log('deploy lint: no problems');
  return count ? 1 : 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) process.exitCode = main(process.argv.slice(2));
