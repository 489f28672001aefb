import type { Logger } from 'pino';
import type { GpuInfo, GpuProcess, HostGpus } from '@photoenhance/contracts';
import type { Verdict } from './admission.js';
import { BYTES, formatBytes } from './child-failure.js';
import { GpuSampler, type GpuSample } from './gpu.js';
import { descendantsOf } from './process-tree.js';
import type { EngineProfile } from './types.js';

export interface GpuOptions {
  /** auto: use GPUs when nvidia-smi lists some; off: never sample. Default auto. */
  mode?: 'auto' | 'off';
  /** Path of nvidia-smi (tests point it at a fake). Default "nvidia-smi". */
  nvidiaSmi?: string;
  /** Added to a profile's expected GPU footprint to make its default GPU floor. Default 512 MiB. */
  marginBytes?: number;
  /** Per nvidia-smi call. Default 5 000. */
  timeoutMs?: number;
}

/** Default expected GPU footprint of a GPU profile that names none: GFPGAN 1.4 + RealESRGAN x2 with 400 px tiles
 * peaked at about 1.5 GiB on an H200 (BRIEF section 4); 2 GiB leaves room for the face batch. */
export const DEFAULT_EXPECTED_GPU_BYTES = 2 * BYTES.GiB;

/** A GPU engine process's place: which GPU, and (once spawned) its pid, for attributing GPU memory to it. */
export interface GpuPlacement {
  readonly profile: string;
  readonly gpu: GpuInfo;
  readonly expectedBytes: number;
  /** The environment that pins the process: CUDA_VISIBLE_DEVICES by UUID (index order differs between nvidia-smi
   * and CUDA unless CUDA_DEVICE_ORDER=PCI_BUS_ID). */
  readonly env: Record<string, string>;
  /** Tell it how to find the process's pid (known once spawned). */
  attach(pid: () => number | undefined): void;
  release(): void;
}

const describeGpu = (g: GpuInfo): string => `GPU ${g.index} (${g.name || 'unnamed'}, ${g.uuid})`;

/**
 * GPU admission and placement, over nvidia-smi samples. Only profiles with `gpus` set are GPU engines. An engine
 * starts only on a GPU (among its `gpus`) with at least its GPU floor free, counting engines placed there that have
 * not yet allocated their expected footprint; the host holds with GPU_MEMORY_LOW while no GPU a GPU engine may use
 * has its floor free, and with GPU_UNAVAILABLE while sampling fails.
 */
export class GpuGovernance {
  readonly sampler: GpuSampler;
  private readonly margin: number;
  private readonly placements = new Set<{ p: GpuPlacement; pid: () => number | undefined }>();

  constructor(
    opts: GpuOptions,
    private readonly profiles: EngineProfile[],
    private readonly logger: Logger,
  ) {
    this.sampler = new GpuSampler({
      ...(opts.nvidiaSmi ? { nvidiaSmi: opts.nvidiaSmi } : {}),
      ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}),
      logger,
    });
    this.margin = opts.marginBytes ?? 512 * BYTES.MiB;
    if (opts.mode === 'off') {
      this.sampler.state = 'off';
      this.sampler.reason = 'switched off by configuration';
    }
  }

  get on(): boolean {
    return this.sampler.enabled;
  }

  usesGpu(p: EngineProfile): boolean {
    return p.kind === 'resident' && p.gpus !== undefined && (p.gpus === 'all' || p.gpus.length > 0);
  }

  expected(p: EngineProfile): number {
    return p.expectedGpuMemoryBytes ?? DEFAULT_EXPECTED_GPU_BYTES;
  }

  floor(p: EngineProfile): number {
    return p.gpuFloorBytes ?? this.expected(p) + this.margin;
  }

  refresh(): Promise<GpuSample | undefined> {
    return this.sampler.sample();
  }

  private allowed(p: EngineProfile, gpus: GpuInfo[]): GpuInfo[] {
    const want = p.gpus;
    return want === 'all' || want === undefined ? gpus : gpus.filter((g) => want.includes(g.index));
  }

  /** GPU bytes held by a process tree, from the last sample's compute apps. */
  private usedBy(pid: number | undefined, apps: GpuProcess[], uuid?: string): number {
    if (pid === undefined || apps.length === 0) return 0;
    const tree = new Set(descendantsOf(pid));
    return apps.filter((a) => tree.has(a.pid) && (uuid === undefined || a.gpuUuid === uuid)).reduce((s, a) => s + a.usedBytes, 0);
  }

  /** Free memory of a GPU minus what engines placed on it are still expected to take (started, not yet allocated). */
  private effectiveFree(g: GpuInfo, sample: GpuSample): number {
    let pending = 0;
    for (const { p, pid } of this.placements) {
      if (p.gpu.uuid !== g.uuid) continue;
      pending += Math.max(0, p.expectedBytes - this.usedBy(pid(), sample.apps, g.uuid));
    }
    return g.freeBytes - pending;
  }

  /** The GPU a new engine of this profile would go to now (most effective free memory that holds its floor). */
  choose(p: EngineProfile): { gpu: GpuInfo; free: number } | undefined {
    const s = this.sampler.last;
    if (!this.on || this.sampler.state !== 'on' || !s) return undefined;
    let best: { gpu: GpuInfo; free: number } | undefined;
    for (const g of this.allowed(p, s.gpus)) {
      const free = this.effectiveFree(g, s);
      if (free >= this.floor(p) && (!best || free > best.free)) best = { gpu: g, free };
    }
    return best;
  }

  /** May an engine of this profile start now? Non-GPU profiles and a host with the GPU parts off: always. */
  canStart(p: EngineProfile): boolean {
    if (!this.on || !this.usesGpu(p)) return true;
    return this.choose(p) !== undefined;
  }

  /** Pin a new engine: the environment for its process, and a record that counts its footprint until released. */
  place(p: EngineProfile): GpuPlacement | undefined {
    if (!this.on || !this.usesGpu(p)) return undefined;
    const c = this.choose(p);
    if (!c) return undefined;
    const entry: { p: GpuPlacement; pid: () => number | undefined } = { p: undefined as unknown as GpuPlacement, pid: () => undefined };
    entry.p = {
      profile: p.name,
      gpu: c.gpu,
      expectedBytes: this.expected(p),
      env: { CUDA_VISIBLE_DEVICES: c.gpu.uuid, CUDA_DEVICE_ORDER: 'PCI_BUS_ID' },
      attach: (pid) => {
        entry.pid = pid;
      },
      release: () => {
        this.placements.delete(entry);
      },
    };
    this.placements.add(entry);
    this.logger.info(
      { profile: p.name, gpu: c.gpu.index, uuid: c.gpu.uuid, freeBytes: c.free, floorBytes: this.floor(p) },
      `GPU: engine ${p.name} placed on ${describeGpu(c.gpu)}: ${formatBytes(c.free)} free (floor ${formatBytes(this.floor(p))})`,
    );
    return entry.p;
  }

  /**
   * Why the GPUs say hold, or undefined. Holds while sampling fails, and while some GPU engine has no usable GPU with
   * its floor free (its engines' GPUs when it has engines, else the GPUs it may use).
   */
  verdict(): Verdict | undefined {
    if (!this.on) return undefined;
    const gpuProfiles = this.profiles.filter((p) => this.usesGpu(p));
    if (gpuProfiles.length === 0) return undefined;
    if (this.sampler.state === 'error') return { reason: 'GPU_UNAVAILABLE', detail: `GPU figures cannot be read: ${this.sampler.reason}` };
    const s = this.sampler.last;
    if (!s) return undefined;
    for (const p of gpuProfiles) {
      const pinned = new Set([...this.placements].filter((e) => e.p.profile === p.name).map((e) => e.p.gpu.uuid));
      const candidates = pinned.size > 0 ? s.gpus.filter((g) => pinned.has(g.uuid)) : this.allowed(p, s.gpus);
      if (candidates.length === 0) {
        return {
          reason: 'GPU_MEMORY_LOW',
          detail: `engine ${p.name} may use GPUs ${JSON.stringify(p.gpus)}, and nvidia-smi lists none of them`,
        };
      }
      const floor = this.floor(p);
      // An engine already placed holds its models: what it needs free is its floor minus what it already has.
      const fits = candidates.some((g) => g.freeBytes + (pinned.size > 0 ? this.heldOn(g, p, s) : 0) >= floor);
      if (!fits) {
        const figures = candidates
          .map((g) => `${describeGpu(g)} has ${formatBytes(g.freeBytes)} free of ${formatBytes(g.totalBytes)}`)
          .join('; ');
        return {
          reason: 'GPU_MEMORY_LOW',
          detail: `${figures}; engine ${p.name} needs ${formatBytes(floor)} free (expected ${formatBytes(this.expected(p))} + margin ${formatBytes(this.margin)}${p.gpuFloorBytes !== undefined ? ', configured gpuFloorBytes' : ''})`,
        };
      }
    }
    return undefined;
  }

  /** GPU bytes the profile's engines on this GPU hold now, up to their expected footprint. */
  private heldOn(g: GpuInfo, p: EngineProfile, s: GpuSample): number {
    let held = 0;
    for (const { p: pl, pid } of this.placements) {
      if (pl.profile !== p.name || pl.gpu.uuid !== g.uuid) continue;
      held += Math.min(pl.expectedBytes, this.usedBy(pid(), s.apps, g.uuid));
    }
    return held;
  }

  /** The GPU a process is pinned to and what its tree holds there. */
  processGpu(pid: number | undefined): { index: number; uuid: string; usedBytes: number } | undefined {
    if (pid === undefined) return undefined;
    for (const { p, pid: getPid } of this.placements) {
      if (getPid() !== pid) continue;
      const s = this.sampler.last;
      const g = s?.gpus.find((x) => x.uuid === p.gpu.uuid) ?? p.gpu;
      return { index: g.index, uuid: g.uuid, usedBytes: s ? this.usedBy(pid, s.apps, g.uuid) : 0 };
    }
    return undefined;
  }

  snapshot(): HostGpus {
    const s = this.sampler.last;
    return {
      state: this.sampler.state,
      reason: this.sampler.reason,
      gpus: this.sampler.state === 'off' ? [] : (s?.gpus ?? []),
      ...(s ? { sampledAt: s.at, sampleCostMs: s.costMs } : {}),
    };
  }
}
