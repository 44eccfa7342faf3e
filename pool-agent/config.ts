/**
 * The agent's state folder and configuration. The config file (`pool-agent.json`, written by
 * `pool-agent init`, edited by the owner) and the machine-written state (`state.json`:
 * registration, edge keys, measured throughput) are parsed with zod once at the entry; a bad file
 * is a clear error naming the field, never an `undefined` deep in the server.
 *
 * @example
 * const dir = resolveStateDir(flags.dir);
 * const config = await loadConfig(dir);
 * const settings = mergeSettings(config, { port: 0 });
 */
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { z } from 'zod';

export const CONFIG_FILE = 'pool-agent.json';
export const STATE_FILE = 'state.json';
export const IDENTITY_FILE = 'identity.json';
export const PORT_FILE = 'port';
export const HEARTBEAT_SEQ_FILE = 'heartbeat-seq';

const layersSchema = z
  .tuple([z.number().int().nonnegative(), z.number().int().positive()])
  .refine(([a, b]) => a < b, 'layers is [start, end) with start < end');

export const configSchema = z
  .object({
    /** Address the server binds (127.0.0.1 unless the owner opens it up). */
    host: z.string().min(1).max(255).default('127.0.0.1'),
    port: z.number().int().min(0).max(65535).default(0),
    /** URL other agents and the edge use to reach this agent (defaults to the bound address). */
    endpoint: z.string().url().max(512).optional(),
    modelDir: z.string().min(1).optional(),
    /** Layers served, [start, end); default: the whole model. */
    layers: layersSchema.optional(),
    threads: z.number().int().min(0).max(1024).optional(),
    provider: z.enum(['auto', 'cpu', 'cuda']).default('auto'),
    /**
     * Local devices the span is cut over (`cpu`, `cuda`, `cuda:N`), a local pipeline of one part
     * per device; when absent, one part on `provider`.
     */
    devices: z
      .array(z.string().regex(/^(cpu|cuda(:\d{1,3})?)$/, 'a device is cpu, cuda or cuda:N'))
      .min(1)
      .max(64)
      .optional(),
    maxSessions: z.number().int().positive().max(100_000).default(16),
    /** Total KV-cache bytes reservable by open sessions (default 2 GiB). */
    maxKvBytes: z.number().int().positive().default(2 * 1024 ** 3),
    sessionIdleMs: z.number().int().positive().default(60_000),
    hopTimeoutMs: z.number().int().positive().default(30_000),
    /** Links and taps held open at once (default 2 x maxSessions + 16); more upgrades are refused. */
    maxLinks: z.number().int().positive().max(1_000_000).optional(),
    /**
     * How this agent, as the head of a route, reaches the later hops: 'link' (one upgraded
     * connection per job and hop; a decode step goes once round the ring) or 'post' (one HTTP
     * request per step and hop, answered back up the chain).
     */
    hopTransport: z.enum(['link', 'post']).default('link'),
    shutdownGraceMs: z.number().int().nonnegative().default(20_000),
    /**
     * What this agent keeps of recent jobs so re-execution checks can ask for it (the tokens or
     * activations it received and sent, docs/trust.md §2): in memory only, never on disk, for
     * `keepMinutes`, at most `maxJobs` jobs and `maxMB` in all, the oldest job dropped first. A
     * check that asks after that finds nothing, and an agent that kept nothing is blamed for
     * withholding when its disclosure was needed: keep at least the edge's check window (30 s).
     */
    disclosure: z
      .object({
        keepMinutes: z.number().positive().max(24 * 60).default(10),
        maxJobs: z.number().int().positive().max(1_000_000).default(512),
        maxMB: z.number().int().positive().max(1024 * 1024).default(256),
      })
      .strict()
      .default({ keepMinutes: 10, maxJobs: 512, maxMB: 256 }),
    /** Ticket-signing public keys trusted besides the ones stored at registration, by key id. */
    edgeKeys: z.record(z.string().min(1).max(64), z.string().regex(/^[A-Za-z0-9_-]{43}$/)).default({}),
    edgeUrl: z.string().url().optional(),
    region: z.string().optional(),
    price: z.number().nonnegative().max(1000).optional(),
    poolName: z.string().min(1).max(128).optional(),
    logLevel: z.enum(['debug', 'info', 'warn', 'error']).default('info'),
  })
  .strict();
export type AgentConfig = z.infer<typeof configSchema>;

export const stateSchema = z.object({
  agentId: z.string().optional(),
  poolId: z.string().optional(),
  edgeUrl: z.string().url().optional(),
  edgeKeys: z.record(z.string(), z.string()).default({}),
  heartbeatUrl: z.string().optional(),
  heartbeatIntervalMs: z.number().int().positive().optional(),
  /**
   * What the last `pool-agent register` told the edge: the edge routes jobs for this model and
   * these layers to this endpoint, so `serve` must load exactly that span. `port` is where serve
   * listens for it (the endpoint's port, or register's --port behind a proxy); absent when the
   * endpoint names none. Absent altogether in state folders registered before it was recorded.
   */
  registration: z
    .object({
      endpoint: z.string(),
      modelId: z.string(),
      layers: z.tuple([z.number().int().nonnegative(), z.number().int().positive()]),
      port: z.number().int().min(1).max(65535).optional(),
    })
    .optional(),
  /** Measured by `pool-agent bench`, per model id and span. */
  bench: z
    .array(z.object({ modelId: z.string(), layers: z.tuple([z.number(), z.number()]), tokensPerS: z.number(), threads: z.number().optional(), at: z.number() }))
    .default([]),
});
export type AgentState = z.infer<typeof stateSchema>;

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/** `--dir`, else $LAYERNET_AGENT_DIR, else ~/.layernet-agent. */
export function resolveStateDir(flag?: string, env: NodeJS.ProcessEnv = process.env): string {
  return resolve(flag ?? env.LAYERNET_AGENT_DIR ?? join(homedir(), '.layernet-agent'));
}

function describe(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
}

async function readJson(path: string): Promise<unknown | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new ConfigError(`cannot read ${path}: ${(err as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new ConfigError(`${path} is not valid JSON`);
  }
}

/** Parses a config object (file contents merged with flags); throws ConfigError naming each bad field. */
export function parseConfig(raw: unknown, source = CONFIG_FILE): AgentConfig {
  const parsed = configSchema.safeParse(raw ?? {});
  if (!parsed.success) throw new ConfigError(`invalid configuration in ${source}: ${describe(parsed.error)}`);
  return parsed.data;
}

export async function loadConfig(dir: string): Promise<AgentConfig> {
  const path = join(dir, CONFIG_FILE);
  return parseConfig(await readJson(path), path);
}

/** File settings overridden by flags (flags win; undefined flags are ignored). */
export function mergeSettings(file: unknown, flags: Record<string, unknown>): AgentConfig {
  const base = (file && typeof file === 'object' ? file : {}) as Record<string, unknown>;
  const defined = Object.fromEntries(Object.entries(flags).filter(([, v]) => v !== undefined));
  return parseConfig({ ...base, ...defined }, 'configuration and flags');
}

export async function loadRawConfig(dir: string): Promise<unknown> {
  const raw = (await readJson(join(dir, CONFIG_FILE))) ?? {};
  parseConfig(raw, join(dir, CONFIG_FILE));
  return raw;
}

export async function loadState(dir: string): Promise<AgentState> {
  const path = join(dir, STATE_FILE);
  const parsed = stateSchema.safeParse((await readJson(path)) ?? {});
  if (!parsed.success) throw new ConfigError(`invalid state in ${path}: ${describe(parsed.error)}`);
  return parsed.data;
}

/** Atomic write (temp file then rename) with the given mode. */
export async function writeFileAtomic(path: string, text: string, mode = 0o644): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, text, { mode });
  await rename(tmp, path);
}

export async function saveState(dir: string, state: AgentState): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFileAtomic(join(dir, STATE_FILE), JSON.stringify(stateSchema.parse(state), null, 2) + '\n', 0o600);
}

export async function saveConfig(dir: string, config: unknown): Promise<void> {
  parseConfig(config);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFileAtomic(join(dir, CONFIG_FILE), JSON.stringify(config, null, 2) + '\n', 0o600);
}

/**
 * Records a model folder as `modelDir` in the state folder's pool-agent.json, so `bench`,
 * `register` and `serve` find it without `--model`. Only when the state folder exists (made by
 * `pool-agent init`): building a model elsewhere (a build machine, `npm start`) creates no agent
 * state. Returns the config file written and the folder it replaced, or undefined when the state
 * folder does not exist.
 *
 * @example
 * const recorded = await recordModelDir(resolveStateDir(flags.dir), built.dir);
 */
export async function recordModelDir(dir: string, modelDir: string): Promise<{ path: string; previous?: string } | undefined> {
  const isDir = await stat(dir).then(
    (s) => s.isDirectory(),
    () => false,
  );
  if (!isDir) return undefined;
  const raw = (await loadRawConfig(dir)) as Record<string, unknown>;
  const previous = typeof raw.modelDir === 'string' ? resolve(raw.modelDir) : undefined;
  const next = resolve(modelDir);
  if (previous !== next) await saveConfig(dir, { ...raw, modelDir: next });
  return { path: join(dir, CONFIG_FILE), ...(previous && previous !== next ? { previous } : {}) };
}
