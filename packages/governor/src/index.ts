export * from './types.js';
export { Governor, type GovernorExtras, type GovernorInit } from './governor.js';
export {
  dueAfterJob,
  exitReason,
  isPlannedRecycle,
  recycleEvent,
  type AfterJob,
  type ExitRecycleReason,
  type PlannedRecycleReason,
  type RecycleFigures,
  type RecycleInfo,
  type RecycleReason,
} from './recycle-policy.js';
export { defaultProfile, defaultAdmission, DEFAULT_MEMORY_LIMIT_BYTES, type ProfileInput } from './profile.js';
export { detectEnforcement, isCgroupFs, ownCgroupV2Path, type EnforcementPlan, type DetectOptions } from './enforcement.js';
export { CgroupSlot, JOIN_SCRIPT, removeStaleGroups } from './cgroup.js';
export { Admission } from './admission.js';
export { readHostMemory, readProcMeminfo, readPressureSome10, type MemoryReader } from './host-memory.js';
export { MemoryWatchdog, type WatchdogOptions } from './watchdog.js';
export { descendantsOf, rssOf, treeRss } from './process-tree.js';
export { describeExit, engineFailure, formatBytes } from './child-failure.js';
export { SupervisedChild, type ChildExit, type ChildSpec, type MemoryLimitHit } from './supervised-child.js';
export type { StartRecord } from './start-queue.js';
export {
  GpuSampler,
  GpuParseError,
  parseGpuCsv,
  parseComputeApps,
  GPU_QUERY,
  APPS_QUERY,
  type GpuSample,
  type GpuSamplerOptions,
  type GpuSamplerState,
} from './gpu.js';
export { GpuGovernance, DEFAULT_EXPECTED_GPU_BYTES, type GpuOptions, type GpuPlacement } from './gpu-governance.js';
export {
  autoBgTile,
  bgUpsamplerGpuBytes,
  chooseBgTile,
  BG_MODEL,
  MIN_AUTO_TILE,
  MAX_AUTO_TILE,
  type BgTileChoice,
  type TileChoice,
} from './gpu-tiles.js';
