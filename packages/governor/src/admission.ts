import type { AdmissionState, AdmissionTransition, HostMemory } from '@photoenhance/contracts';
import type { AdmissionConfig } from './types.js';
import { BYTES, formatBytes } from './child-failure.js';
import { defaultAdmission } from './profile.js';

export interface Verdict {
  reason: string;
  detail: string;
}

const HISTORY = 50;

/**
 * The admission decision: pure arithmetic over host memory figures and thresholds, plus the record of transitions.
 * It reads nothing itself; the governor feeds it fresh figures on a timer and before each spawn.
 */
export class Admission {
  private config: AdmissionConfig;
  private largestExpected: number;
  private current: AdmissionState;
  readonly transitions: AdmissionTransition[] = [];

  constructor(config: Partial<AdmissionConfig>, largestExpectedBytes: number, now = Date.now()) {
    this.config = defaultAdmission(config);
    this.largestExpected = largestExpectedBytes;
    this.current = { state: 'admitting', reason: 'ok', since: now, thresholds: this.thresholds() };
  }

  /** MemAvailable floor: configured, or max(2 GiB, the largest expected engine footprint). */
  floor(): number {
    return this.config.minAvailableBytes ?? Math.max(2 * BYTES.GiB, this.largestExpected);
  }

  get checkIntervalMs(): number {
    return this.config.checkIntervalMs;
  }

  thresholds(): AdmissionState['thresholds'] {
    return { minAvailableBytes: this.floor(), maxUsedRatio: this.config.maxUsedRatio, maxPressureSome10: this.config.maxPressureSome10 };
  }

  /** Change thresholds at run time (operator endpoint, tests). The caller re-evaluates with fresh figures. */
  set(partial: Partial<AdmissionConfig>): void {
    this.config = defaultAdmission({ ...this.config, ...partial });
  }

  /** Why the host memory alone says hold, or undefined when it says admit. */
  memoryVerdict(m: HostMemory): Verdict | undefined {
    const floor = this.floor();
    if (m.availableBytes < floor) {
      return {
        reason: 'MEMORY_AVAILABLE_LOW',
        detail: `MemAvailable ${formatBytes(m.availableBytes)} is below the floor ${formatBytes(floor)}`,
      };
    }
    if (m.usedRatio > this.config.maxUsedRatio) {
      return {
        reason: 'MEMORY_USED_HIGH',
        detail: `memory used ${(m.usedRatio * 100).toFixed(1)} % is above ${(this.config.maxUsedRatio * 100).toFixed(1)} %`,
      };
    }
    if (m.pressureSome10 !== undefined && m.pressureSome10 > this.config.maxPressureSome10) {
      return {
        reason: 'MEMORY_PRESSURE_HIGH',
        detail: `memory pressure (PSI some avg10) ${m.pressureSome10} % is above ${this.config.maxPressureSome10} %`,
      };
    }
    return undefined;
  }

  /** The host can afford one more engine of this footprint without going under the floor. */
  canAfford(m: HostMemory, expectedBytes: number): boolean {
    return m.availableBytes - this.floor() >= expectedBytes;
  }

  get state(): AdmissionState {
    return this.current;
  }

  /**
   * Decide with fresh figures. `blocked` is a non-memory reason to hold (ENGINE_START_FAILED).
   * Returns the new state when the state or the reason changed, else undefined.
   */
  update(m: HostMemory, blocked?: Verdict, now = Date.now()): AdmissionState | undefined {
    const verdict = this.memoryVerdict(m) ?? blocked;
    const state = verdict ? 'holding' : 'admitting';
    const reason = verdict?.reason ?? 'ok';
    if (state === this.current.state && reason === this.current.reason) {
      if (verdict) this.current = { ...this.current, detail: verdict.detail, thresholds: this.thresholds() };
      return undefined;
    }
    this.current = { state, reason, ...(verdict ? { detail: verdict.detail } : {}), since: now, thresholds: this.thresholds() };
    // The detail names what held it (e.g. the GPU and its figures), for the dashboard's timeline.
    this.transitions.push({ at: now, state, reason, ...(verdict ? { detail: verdict.detail } : {}), memory: m });
    if (this.transitions.length > HISTORY) this.transitions.splice(0, this.transitions.length - HISTORY);
    return this.current;
  }
}
