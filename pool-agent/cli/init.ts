/** `pool-agent init`: creates the state folder, the Ed25519 identity (0600) and a config file. */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { CONFIG_FILE, resolveStateDir, saveConfig } from '../config.js';
import { createIdentity, identityExists, loadIdentity } from '../identity.js';
import { parseFlags, str, type CliIo } from './args.js';

export const INIT_USAGE = `Usage: pool-agent init [--dir DIR] [--force]

Creates the agent's state folder (default ~/.layernet-agent or $LAYERNET_AGENT_DIR): an Ed25519
identity (identity.json, mode 0600) and a config file (pool-agent.json) with defaults.
An existing identity is kept unless --force.`;

export async function runInit(argv: string[], io: CliIo): Promise<number> {
  const { values, help } = parseFlags(argv, { dir: { type: 'string' }, force: { type: 'boolean' } }, INIT_USAGE);
  if (help) return io.out(INIT_USAGE), 0;
  const dir = resolveStateDir(str(values.dir), io.env);
  const had = await identityExists(dir);
  const key = had && !values.force ? await loadIdentity(dir) : await createIdentity(dir, { force: values.force === true });
  const configPath = join(dir, CONFIG_FILE);
  const hasConfig = await stat(configPath).then(
    () => true,
    () => false,
  );
  if (!hasConfig) await saveConfig(dir, { host: '127.0.0.1', port: 0, maxSessions: 16, logLevel: 'info' });
  io.out(JSON.stringify({ dir, publicKey: key.publicKey, identity: had && !values.force ? 'kept' : 'created', config: configPath }));
  return 0;
}
