import { EventEmitter } from 'node:events';
import { rmdirSync } from 'node:fs';
import pino, { type Logger } from 'pino';
import type { AdmissionState, EngineOffer, EngineProcessState, HostMemory } from '@photoenhance/contracts';
import { Admission } from './admission.js';
import { removeStaleGroups } from './cgroup.js';
import { formatBytes } from './child-failure.js';
import { detectEnforcement, type EnforcementPlan } from './enforcement.js';
import { EnginePool, type PoolContext } from './engine-pool.js';
import { GpuGovernance, type GpuOptions } from './gpu-governance.js';
import { readHostMemory, type MemoryReader } from './host-memory.js';
import { OneshotPool } from './oneshot-pool.js';
import type { RecycleInfo } from './recycle-policy.js';
import { defaultProfile, type ProfileInput } from './profile.js';
import { StartQueue, type SpawnClient, type StartRecord } from './start-queue.js';
import {
  EngineJobError,
  type AdmissionConfig,
  type EngineProfile,
  type GovernorApi,
  type GovernorOptions,
  type GovernorSnapshot,
  type RunHooks,
  type RunRequest,
  type RunResult,
} from './types.js';

/** Options beyond GovernorOptions; all optional, so a GovernorOptions object is a valid GovernorInit. */
export interface GovernorExtras {
  /** Start one process per profile in start() (under admission, one at a time). Default true. */
  prewarm?: boolean;
  /** Host memory source; default /proc/meminfo + PSI (systeminformation where /proc is missing). */
  memoryReader?: MemoryReader;
  /** Backoff after startFailureLimit failed starts: baseMs x 2^n, capped at maxMs. Default 1 000 / 60 000. */
  startBackoff?: { baseMs?: number; maxMs?: number };
  /** Parent cgroup the engines' groups are made under. Default "photoenhance". */
  cgroupGroup?: string;
  /** GPU admission and placement for profiles with `gpus` (nvidia-smi). Absent: no GPU parts at all. */
  gpu?: GpuOptions;
}

export type GovernorInit = Partial<Omit<GovernorOptions, 'profiles' | 'admission'>> & {
  profiles: (EngineProfile | ProfileInput)[];
  admission?: Partial<AdmissionConfig>;
} & GovernorExtras;

interface Pool extends SpawnClient {
  readonly profile: EngineProfile;
  failures: number;
  lastFailure: EngineJobError | undefined;
  backoffUntil: number;
  prewarm: boolean;
  failing(): boolean;
  run(req: RunRequest, hooks?: RunHooks): Promise<RunResult>;
  offer(): EngineOffer;
  states(now?: number): EngineProcessState[];
  close(): Promise<void>;
}

/** Engine group names are unique in this process, across governors (two in one process would otherwise both make `pe-<profile>-<pid>-1`). */
let slotSeq = 0;

/**
 * The resource governor: decides whether this host takes work (admission), owns the engine processes (pools),
 * starts them one at a time, keeps each inside its memory limit (cgroup and/or watchdog) and recycles them.
 * Events: 'admission' (AdmissionState), 'recycle' (RecycleInfo).
 */
export class Governor extends EventEmitter implements GovernorApi {
  readonly hostId: string;
  private readonly logger: Logger;
  private readonly admission: Admission;
  private readonly pools = new Map<string, Pool>();
  private readonly queue: StartQueue;
  private readonly readMemory: MemoryReader;
  private readonly opts: GovernorInit;
  private plan: EnforcementPlan = { mode: 'watchdog', reason: 'not started yet', fake: false };
  private memory: HostMemory = { totalBytes: 0, availableBytes: 0, usedRatio: 0 };
  private readonly recycles: Record<string, number> = {};
  private timer: NodeJS.Timeout | undefined;
  private started: Promise<void> | undefined;
  private closing: Promise<void> | undefined;
  private readonly gpu: GpuGovernance | undefined;

  constructor(opts: GovernorInit) {
    super();
    this.opts = opts;
    this.hostId = opts.hostId ?? 'local';
    const base = opts.logger ?? pino({ level: 'info' });
    // A caller's logger may already be the governor's (worker.ts binds component: governor): binding it twice wrote the key twice.
    this.logger = base.bindings().component === 'governor' ? base : base.child({ component: 'governor' });
    this.readMemory = opts.memoryReader ?? readHostMemory;
    const profiles = opts.profiles.map((p) => defaultProfile(p));
    if (profiles.length === 0) throw new TypeError('governor: profiles must list at least one engine profile');
    const largest = Math.max(...profiles.map((p) => p.expectedMemoryBytes));
    this.admission = new Admission(opts.admission ?? {}, largest);
    this.gpu = opts.gpu ? new GpuGovernance(opts.gpu, profiles, this.logger) : undefined;
    const ctx: PoolContext = {
      plan: () => this.plan,
      logger: this.logger,
      startFailureLimit: opts.startFailureLimit ?? 3,
      backoff: { baseMs: opts.startBackoff?.baseMs ?? 1_000, maxMs: opts.startBackoff?.maxMs ?? 60_000 },
      // pid + sequence: unique across governors sharing the host (parallel test files, two workers).
      slotName: (profile) => `${profile}-${process.pid}-${++slotSeq}`,
      pump: () => this.queue.pump(),
      recycled: (profile, pid, reason, figures) => this.onRecycle({ profile, pid, reason, figures }),
      failingChanged: () => void this.refresh(),
      ...(this.gpu
        ? {
            placeGpu: (p: EngineProfile) => this.gpu!.place(p),
            gpuUsedBy: (pid: number | undefined) => this.gpu!.processGpu(pid)?.usedBytes,
            processGpu: (pid: number | undefined) => this.gpu!.processGpu(pid),
          }
        : {}),
    };
    for (const p of profiles) {
      if (this.pools.has(p.name)) throw new TypeError(`governor: two engine profiles are named "${p.name}"; names must be unique`);
      this.pools.set(p.name, p.kind === 'oneshot' ? new OneshotPool(p, ctx) : new EnginePool(p, ctx));
    }
    this.queue = new StartQueue(
      () => this.pools.values(),
      (c) => this.canStart(c),
      this.logger,
    );
  }

  /** Detect enforcement, read memory, start the admission timer, pre-warm. Idempotent. */
  start(): Promise<void> {
    this.started ??= (async () => {
      this.plan = detectEnforcement({
        requested: this.opts.enforcement ?? 'auto',
        ...(this.opts.cgroupRoot ? { cgroupRoot: this.opts.cgroupRoot } : {}),
        ...(this.opts.cgroupGroup ? { group: this.opts.cgroupGroup } : {}),
      });
      this.logger.info({ mode: this.plan.mode, reason: this.plan.reason }, `memory enforcement: ${this.plan.mode} — ${this.plan.reason}`);
      // A worker killed outright cannot remove its engines' groups: the next one to start does.
      const parents = [this.plan.v2Dir, this.plan.v1MemoryDir, this.plan.v1CpuDir].filter((d): d is string => !!d);
      const stale = removeStaleGroups(parents, { fake: this.plan.fake });
      if (stale.length)
        this.logger.info({ removed: stale }, `removed ${stale.length} empty engine cgroup(s) left by workers that are gone`);
      await this.refresh();
      this.schedule();
      if (this.opts.prewarm ?? true) for (const p of this.pools.values()) p.prewarm = true;
      this.queue.pump();
    })();
    return this.started;
  }

  /** Dynamic batching in force for a resident profile (its engine declared batch in ready), else undefined. */
  batching(profile: string): { maxBatch: number; maxQueueDelayMs: number } | undefined {
    const pool = this.pools.get(profile);
    return pool instanceof EnginePool ? pool.batching() : undefined;
  }

  async run(profile: string, req: RunRequest, hooks: RunHooks = {}): Promise<RunResult> {
    if (this.closing) throw new EngineJobError('ENGINE_FAILED', `engine ${profile} is not available: the governor is closing`);
    await this.start();
    const pool = this.pools.get(profile);
    if (!pool) {
      throw new EngineJobError(
        'ENGINE_FAILED',
        `no engine profile "${profile}" on host ${this.hostId}; configured: ${[...this.pools.keys()].join(', ')}`,
        {
          retryable: false,
        },
      );
    }
    return pool.run(req, hooks);
  }

  /** Whether this host takes jobs now; with a profile, whether it takes jobs for that engine (memory + its start state). */
  admitting(profile?: string): boolean {
    if (profile === undefined) return this.admission.state.state === 'admitting';
    const pool = this.pools.get(profile);
    // GPU figures concern GPU engines only (the host as a whole still holds while they are low)
    const gpuOk = !pool || !this.gpu?.usesGpu(pool.profile) || this.gpu.verdict() === undefined;
    return !!pool && !pool.failing() && this.admission.memoryVerdict(this.memory) === undefined && gpuOk;
  }

  /** Change admission thresholds at run time; resolves with the state decided on fresh figures. */
  async setAdmission(partial: Partial<AdmissionConfig>): Promise<AdmissionState> {
    this.admission.set(partial);
    this.logger.info({ thresholds: this.admission.thresholds() }, 'admission thresholds changed');
    await this.refresh();
    this.schedule();
    this.queue.pump();
    return this.admission.state;
  }

  /** Every start attempt with its spawn and settle times: start-ups never overlap. */
  startHistory(): StartRecord[] {
    return [...this.queue.history];
  }

  get enforcement(): { mode: EnforcementPlan['mode']; reason: string } {
    return { mode: this.plan.mode, reason: this.plan.reason };
  }

  snapshot(): GovernorSnapshot {
    const now = Date.now();
    return {
      admission: this.admission.state,
      memory: this.memory,
      enforcement: this.enforcement,
      engines: [...this.pools.values()].map((p) => p.offer()),
      processes: [...this.pools.values()]
        .flatMap((p) => p.states(now))
        .map((s) => {
          const g = this.gpu?.processGpu(s.pid);
          return g ? { ...s, gpu: g } : s;
        }),
      recycles: { ...this.recycles },
      transitions: [...this.admission.transitions],
      ...(this.gpu ? { gpu: this.gpu.snapshot() } : {}),
    };
  }

  /** Stop taking work, stop every engine (ladder), stop timers. Idempotent; leaves no process behind. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      if (this.timer) clearTimeout(this.timer);
      this.queue.close();
      await this.started?.catch(() => undefined);
      await Promise.all([...this.pools.values()].map((p) => p.close()));
      for (const dir of [this.plan.v2Dir, this.plan.v1MemoryDir, this.plan.v1CpuDir]) {
        if (!dir || this.plan.fake) continue;
        try {
          rmdirSync(dir); // shared with other governors on the host: only removed when empty
        } catch {
          /* in use or already gone */
        }
      }
      this.logger.info('governor closed');
    })();
    return this.closing;
  }

  private schedule(): void {
    if (this.timer) clearTimeout(this.timer);
    if (this.closing) return;
    this.timer = setTimeout(() => {
      void this.refresh().then(() => {
        this.queue.pump();
        this.schedule();
      });
    }, this.admission.checkIntervalMs);
    this.timer.unref();
  }

  /** Fresh figures → admission decision (+ event and log on a transition). */
  private async refresh(): Promise<HostMemory> {
    try {
      this.memory = await this.readMemory();
    } catch (e) {
      this.logger.error({ err: e }, 'host memory could not be read; keeping the last figures');
    }
    // Hard GPU limits act on fresh figures only: a failing sampler keeps the last ones for display, not for kills.
    if (this.gpu && (await this.gpu.refresh()) && !this.closing) {
      for (const p of this.pools.values()) if (p instanceof EnginePool) p.enforceGpuLimit();
    }
    const failing = [...this.pools.values()].find((p) => p.failing());
    const blocked = failing
      ? {
          reason: 'ENGINE_START_FAILED',
          detail: `engine ${failing.name} failed to start ${failing.failures} times in a row; next try at ${new Date(failing.backoffUntil).toISOString()}. Last: ${failing.lastFailure?.message ?? 'unknown'}`,
        }
      : this.gpu?.verdict();
    const changed = this.admission.update(this.memory, blocked);
    if (changed && !this.closing) {
      const m = this.memory;
      const figures = {
        availableBytes: m.availableBytes,
        usedRatio: +m.usedRatio.toFixed(4),
        pressureSome10: m.pressureSome10,
        floorBytes: this.admission.floor(),
      };
      if (changed.state === 'holding')
        this.logger.warn({ ...figures, reason: changed.reason }, `admission: holding (${changed.reason}): ${changed.detail ?? ''}`);
      else this.logger.info(figures, `admission: admitting (MemAvailable ${formatBytes(m.availableBytes)})`);
      this.emit('admission', changed);
    }
    return this.memory;
  }

  private async canStart(c: SpawnClient): Promise<boolean> {
    const m = await this.refresh();
    if (this.admission.memoryVerdict(m)) return false;
    const profile = this.pools.get(c.name)?.profile;
    if (this.gpu && profile && !this.gpu.canStart(profile)) {
      this.logger.debug({ profile: c.name }, 'engine start waits: no GPU it may use has its GPU floor free');
      return false;
    }
    if (!this.admission.canAfford(m, c.expectedMemoryBytes)) {
      this.logger.debug(
        { profile: c.name, availableBytes: m.availableBytes, floorBytes: this.admission.floor(), expectedBytes: c.expectedMemoryBytes },
        'engine start waits: the host cannot afford its expected footprint yet',
      );
      return false;
    }
    return true;
  }

  private onRecycle(info: RecycleInfo): void {
    this.recycles[info.reason] = (this.recycles[info.reason] ?? 0) + 1;
    this.logger.info(
      { ...info.figures, profile: info.profile, enginePid: info.pid, reason: info.reason },
      `engine ${info.profile} (pid ${info.pid}) recycled: ${info.reason}`,
    );
    this.emit('recycle', info);
  }
}
