/**
 * The registry schema, one table per file.
 *
 * @example
 * import * as schema from './schema/index.js';
 * const db = drizzle(sql, { schema });
 */
export * from './accounts.js';
export * from './api-keys.js';
export * from './models.js';
export * from './pools.js';
export * from './agents.js';
export * from './agent-spans.js';
export * from './observations.js';
export * from './jobs.js';
export * from './usage.js';
export * from './ledger-entries.js';
export * from './disputes.js';
export * from './route-blocks.js';
export * from './edge-keys.js';
export * from './model-files.js';
