export * from './redis.js';
export * from './names.js';
export * from './records.js';
export * from './hosts.js';
export * from './recovery.js';
export * from './durability.js';
export * from './intake.js';
export * from './engine-start.js';
