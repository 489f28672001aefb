/** The types a browser front-end needs (the dashboard), without anything that touches Node. Types only. */
export type * from './dashboard.js';
export type { EngineProcessState, HostState, AdmissionState, HostMemory } from './system.js';
export type { JobStatus, JobView } from './job.js';
