/**
 * `pool-agent register`: creates or reuses the owner's pool in a region, publishes the model
 * manifest (and uploads an imported model's tokenizer files the edge lacks), registers this agent
 * (hardware, spans, measured throughput, public key, proof of key possession) and stores the agent
 * id and the edge's ticket keys in the state folder.
 */
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { z } from 'zod';
import { signBytes } from '../../protocol/keys.js';
import { manifestHash } from '../../protocol/manifest.js';
import { agentRegistrationSchema, edgeKeysSchema, poolSchema, registrationProofBytes, regionSchema, type RegisterAgent } from '../../protocol/owner-api.js';
import { loadRawConfig, loadState, mergeSettings, resolveStateDir, saveConfig, saveState } from '../config.js';
import { detectHardware } from '../hardware.js';
import { loadIdentity } from '../identity.js';
import { loadManifest } from '../model/build.js';
import type { Hardware } from '../../protocol/owner-api.js';
import { CliError, NO_MODEL, parseFlags, parseLayers, parseNumber, str, type CliIo } from './args.js';
import { EdgeClient } from './edge-client.js';
import { listenAddressFor, localAddresses } from './registration.js';
import { uploadTokenizerFiles } from './tokenizer-upload.js';

export const REGISTER_USAGE = `Usage: pool-agent register --edge URL --token OWNER_TOKEN --region REGION --price USD_PER_MTOK
                         --endpoint URL [--port N] [--pool-name NAME] [--model DIR] [--layers A:B] [--dir DIR]

Registers this agent with the edge: creates (or reuses) your pool NAME in REGION, publishes the
model manifest (and uploads an imported model's tokenizer files the edge lacks), then registers the agent's spans, hardware, measured throughput (pool-agent bench)
and public key. --endpoint is the URL the edge and other agents reach this agent at; serve
then listens on its port (and on its host when that is an address of this machine): both are
recorded in pool-agent.json. --port N: serve listens on N instead, when a proxy or port forward
maps the endpoint to it. --layers: the span to serve, the whole model by default; serve refuses
another span until you register again. --model: default modelDir in pool-agent.json, which
model build and model import record. The owner token may come from $LAYERNET_OWNER_TOKEN
instead of --token.`;

export interface RegisterDeps {
  fetch?: (url: string, init: RequestInit) => Promise<Response>;
  hardware?: () => Promise<Hardware>;
  clock?: () => number;
  /** This host's interface addresses (os.networkInterfaces by default). */
  localAddresses?: () => string[];
}

export async function runRegister(argv: string[], io: CliIo, deps: RegisterDeps = {}): Promise<number> {
  const { values, help } = parseFlags(
    argv,
    {
      dir: { type: 'string' },
      edge: { type: 'string' },
      token: { type: 'string' },
      region: { type: 'string' },
      price: { type: 'string' },
      'pool-name': { type: 'string' },
      endpoint: { type: 'string' },
      port: { type: 'string' },
      model: { type: 'string' },
      layers: { type: 'string' },
    },
    REGISTER_USAGE,
  );
  if (help) return io.out(REGISTER_USAGE), 0;
  const dir = resolveStateDir(str(values.dir), io.env);
  const raw = (await loadRawConfig(dir)) as Record<string, unknown>;
  const config = mergeSettings(raw, {
    edgeUrl: str(values.edge),
    region: str(values.region),
    price: parseNumber('price', str(values.price), { min: 0, max: 1000 }),
    poolName: str(values['pool-name']),
    endpoint: str(values.endpoint),
    modelDir: str(values.model),
    layers: parseLayers(str(values.layers)),
  });
  const listenPort = parseNumber('port', str(values.port), { int: true, min: 1, max: 65535 });
  const token = str(values.token) ?? io.env.LAYERNET_OWNER_TOKEN;
  if (!config.edgeUrl) throw new CliError(`--edge URL is required\n\n${REGISTER_USAGE}`);
  if (!token) throw new CliError(`--token (or $LAYERNET_OWNER_TOKEN) is required\n\n${REGISTER_USAGE}`);
  if (!config.region || !regionSchema.safeParse(config.region).success) throw new CliError('--region is required: lowercase letters, digits and dashes (e.g. eu-west)');
  if (config.price === undefined) throw new CliError('--price (USD per million tokens) is required');
  if (!config.endpoint) throw new CliError('--endpoint URL is required: the address the edge and other agents reach this agent at (e.g. https://agent.example.com)');
  if (!config.modelDir) throw new CliError(NO_MODEL);
  const key = await loadIdentity(dir);
  const manifest = await loadManifest(resolve(config.modelDir));
  const modelId = await manifestHash(manifest);
  const layers = config.layers ?? [0, manifest.architecture.numLayers];
  if (layers[1] > manifest.architecture.numLayers) throw new CliError(`--layers ${layers[0]}:${layers[1]} exceeds the model's ${manifest.architecture.numLayers} layers`);
  const edge = new EdgeClient(config.edgeUrl, token, deps.fetch ?? ((u, i) => fetch(u, i)));
  const clock = deps.clock ?? Date.now;

  const poolName = config.poolName ?? `${hostname()}-${config.region}`.slice(0, 128);
  const pools = await edge.call('GET', '/v1/owner/pools', z.object({ data: z.array(poolSchema) }));
  let pool = pools.data.data.find((p) => p.name === poolName && p.region === config.region);
  if (!pool) pool = (await edge.call('POST', '/v1/owner/pools', poolSchema, { name: poolName, region: config.region })).data;
  const published = await edge.call('POST', '/v1/owner/models', z.object({ id: z.string(), created: z.boolean().optional() }), { manifest });
  if (published.data.id !== modelId) throw new CliError(`the edge names the model ${published.data.id}, this host computes ${modelId}`, 1);
  // An imported model is served only once the edge holds its tokenizer files.
  const tokenizerFilesUploaded = await uploadTokenizerFiles(edge, modelId, manifest, resolve(config.modelDir));

  const state = await loadState(dir);
  const bench = state.bench.find((b) => b.modelId === modelId && b.layers[0] === layers[0] && b.layers[1] === layers[1]);
  if (!bench) io.err('warning: no measured throughput for this span; run `pool-agent bench` first (registering with 0 tokens/s)');
  const spans = [{ model_id: modelId, layers: [layers[0], layers[1]] as [number, number] }];

  // Registered at this edge before: update the record (endpoint, price, spans) instead of a
  // second registration of the same key, which the edge refuses.
  let reg: { agent_id: string; pool_id: string; edge_key_id?: string; edge_public_key?: string; heartbeat_url?: string; heartbeat_interval_ms?: number } | null = null;
  if (state.agentId) {
    if (state.poolId && state.poolId !== pool.id) io.err(`note: agent ${state.agentId} stays in its pool ${state.poolId}; use a new identity (init --force) to move it`);
    try {
      await edge.call('PATCH', `/v1/owner/agents/${encodeURIComponent(state.agentId)}`, z.object({ id: z.string() }).passthrough(), {
        price: config.price,
        spans,
        endpoint: config.endpoint,
        status: 'active',
      });
      // The edge's address may have changed since the first registration.
      reg = { agent_id: state.agentId, pool_id: state.poolId ?? pool.id, heartbeat_url: new URL(`/v1/agents/${encodeURIComponent(state.agentId)}/heartbeat`, config.edgeUrl).toString() };
    } catch (err) {
      if ((err as { status?: number }).status !== 404) throw err;
    }
  }
  if (!reg) {
    const unsigned: Omit<RegisterAgent, 'proof'> = {
      pool_id: pool.id,
      endpoint: config.endpoint,
      public_key: key.publicKey,
      hardware: await (deps.hardware ?? detectHardware)(),
      price: config.price,
      spans,
      throughput_tokens_per_s: Math.min(1e7, bench?.tokensPerS ?? 0),
      issued_at: clock(),
    };
    const body: RegisterAgent = { ...unsigned, proof: await signBytes(key.privateKey, registrationProofBytes(unsigned)) };
    try {
      reg = (await edge.call('POST', '/v1/owner/agents', agentRegistrationSchema, body)).data;
    } catch (err) {
      if ((err as { status?: number }).status === 409) {
        throw new CliError(`${(err as Error).message}\nThis identity is registered already but ${dir}/state.json does not name the agent: restore it, or create a new identity with \`pool-agent init --force\`.`, 1);
      }
      throw err;
    }
  }
  const edgeKeys: Record<string, string> = reg.edge_key_id && reg.edge_public_key ? { [reg.edge_key_id]: reg.edge_public_key } : { ...state.edgeKeys };
  try {
    const keys = await edge.call('GET', '/v1/edge/keys', edgeKeysSchema);
    for (const k of keys.data.keys) edgeKeys[k.id] = k.public_key;
  } catch (err) {
    // The registration answer carries the current key; an update keeps the stored ones.
    if (Object.keys(edgeKeys).length === 0) throw err;
  }
  const listen = listenAddressFor(config.endpoint, config, {
    port: listenPort,
    localAddresses: (deps.localAddresses ?? localAddresses)(),
    registeredPort: state.registration?.port,
  });
  for (const n of listen.notes) io.err(`note: ${n}`);
  for (const w of listen.warnings) io.err(`warning: ${w}`);
  await saveState(dir, {
    ...state,
    registration: { endpoint: config.endpoint, modelId, layers: [layers[0], layers[1]], ...(listen.port ? { port: listen.port } : {}) },
    agentId: reg.agent_id,
    poolId: reg.pool_id,
    edgeUrl: config.edgeUrl,
    edgeKeys,
    ...(reg.heartbeat_url ? { heartbeatUrl: reg.heartbeat_url } : {}),
    ...(reg.heartbeat_interval_ms ? { heartbeatIntervalMs: reg.heartbeat_interval_ms } : {}),
  });
  // Remember what was typed so `serve` and later registers need fewer flags (never the token),
  // and where serve must listen for the edge to reach it at the endpoint.
  await saveConfig(dir, {
    ...raw,
    edgeUrl: config.edgeUrl,
    region: config.region,
    price: config.price,
    poolName,
    endpoint: config.endpoint,
    host: listen.host,
    port: listen.port,
    modelDir: resolve(config.modelDir),
    layers,
  });
  io.out(
    JSON.stringify({
      agentId: reg.agent_id,
      poolId: reg.pool_id,
      modelId,
      layers,
      endpoint: config.endpoint,
      listen: { host: listen.host, port: listen.port },
      edgeKeyIds: Object.keys(edgeKeys),
      updated: !('edge_key_id' in reg),
      tokenizerFilesUploaded,
    }),
  );
  return 0;
}
