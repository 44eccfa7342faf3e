/**
 * The embedded registry (db/embedded.ts) as a process of its own, for tests that stop, pause or
 * restart it (test/support/registry-process.ts): PGlite persisted in `--data-dir`, served on
 * `--port` of 127.0.0.1. Prints `listening <url>` once it accepts connections; SIGTERM or
 * SIGINT stops it cleanly (connections closed, the database flushed to disk) and exits 0.
 *
 *   node --import tsx test/support/registry-server.ts --data-dir DIR --port PORT
 */
import { parseArgs } from 'node:util';
import { startEmbeddedRegistry } from '../../db/embedded.js';

const { values } = parseArgs({ options: { 'data-dir': { type: 'string' }, port: { type: 'string' } } });
if (!values['data-dir'] || !values.port) {
  console.error('usage: registry-server.ts --data-dir DIR --port PORT');
  process.exit(2);
}
const registry = await startEmbeddedRegistry({ dataDir: values['data-dir'], port: Number(values.port) });
let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  registry.stop().then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(`stop failed: ${err instanceof Error ? err.message : String(err)}`);
      process.exit(1);
    },
  );
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
console.log(`listening ${registry.url}`);
