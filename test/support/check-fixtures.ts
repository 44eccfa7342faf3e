/**
 * What the unit suites of re-execution checks (test/unit/edge-checks.test.ts,
 * edge-span-checks.test.ts) build on, on the edge's memory store: agents of one test model with
 * real keys, tickets signed as the edge signs them, the edge's check deps, the edge's signed
 * requests read as a real agent reads them (for fake checkers), and the agent's real
 * `POST /v1/checks` service on a loopback port with requests signed as the edge signs them.
 *
 * @example
 * const a = await registerCheckAgent(store, { name: 'a', owner: 'owner-a', layers: [0, NUM_LAYERS], now });
 * const { signed, hash } = await issueTestTicket(store, edgeKey, { jobId: 'job_1', hopIds: [a.id], promptIds: [1, 5, 6], now });
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { TtlCache } from '../../edge/cache.js';
import type { CheckDeps } from '../../edge/checks/run-checks.js';
import { resolveConfig } from '../../edge/config.js';
import type { AgentTransport } from '../../edge/deps.js';
import { issueTicket } from '../../edge/dispatch/ticket.js';
import type { MemoryStore } from '../../edge/store/memory.js';
import type { RouteCandidate } from '../../db/registry-contract.js';
import { importCheckSecret } from '../../edge/trust/sampling.js';
import { UnstakedTrafficWindow } from '../../edge/trust/unstaked-window.js';
import { checkInputsMessage } from '../../protocol/agent-api.js';
import { sha256Hex, utf8 } from '../../protocol/bytes.js';
import { CHECK_ISSUED_AT_HEADER, CHECK_SIGNATURE_HEADER, checkRequestMessage, checkRequestSchema, type CheckRequest } from '../../protocol/check.js';
import { generateSigningKey, signBytes, verifyBytes, type SigningKey } from '../../protocol/keys.js';
import type { CheckService } from '../../pool-agent/server/checks.js';
import { toAgentError } from '../../pool-agent/server/errors.js';
import { sendError } from '../../pool-agent/server/http.js';
import type { LoadedSpan } from '../../pool-agent/runtime/types.js';

export const MODEL = 'ab'.repeat(32);
export const NUM_LAYERS = 4;
const HW = { devices: [{ kind: 'cpu' as const, name: 'test', memoryBytes: 1 }], memoryBytes: 1, platform: 'linux' };

export interface CheckAgent {
  id: string;
  key: SigningKey;
  /** http://NAME.test: how a fake transport knows which agent is asked. */
  endpoint: string;
}

/** Registers `layers` of the model for a new agent in a new pool of `owner`, staked (unless `stake` is 0), heartbeating at `now`. */
export async function registerCheckAgent(
  store: MemoryStore,
  o: { name: string; owner: string; layers: [number, number]; stake?: number; now: number },
): Promise<CheckAgent> {
  const stake = o.stake ?? 1_000_000;
  const pool = await store.createPool({ ownerAccountId: o.owner, name: `pool-${o.name}`, region: 'eu-west' });
  if (stake) await store.addStake(pool.id, stake, 'test', o.now);
  const key = await generateSigningKey();
  const endpoint = `http://${o.name}.test`;
  const rec = await store.registerAgent(
    { poolId: pool.id, ownerAccountId: o.owner, endpoint, publicKey: key.publicKey, hardware: HW, priceMicroUsdPerMTok: 100_000, throughputTokensPerS: 10, spans: [{ modelId: MODEL, layers: o.layers }] },
    o.now,
  );
  await store.applyHeartbeat({ agentId: rec.id, seq: 1, sentAt: o.now, receivedAt: o.now, queueDepth: 0, load: 0, freeKvBytes: 0, activeSessions: 0 });
  return { id: rec.id, key, endpoint };
}

/** The ticket the edge signs for a job over `hopIds` (their registered spans, in order): greedy, 4 tokens at most. */
export async function issueTestTicket(
  store: MemoryStore,
  edgeKey: SigningKey,
  o: { jobId: string; hopIds: string[]; promptIds: number[]; prefixIds?: number[]; now: number },
) {
  const candidates = await store.listRouteCandidates(MODEL, { heartbeatAfter: 0, limit: 100 });
  const route = o.hopIds.map((id) => candidates.find((c) => c.agentId === id)!);
  const { signed, hash } = await issueTicket(
    { jobId: o.jobId, model: { id: MODEL, dtype: 'float32' }, hops: route, promptIds: o.promptIds, prefixIds: o.prefixIds ?? [], maxTokens: 4, sampling: { temperature: 0, topP: 1, topK: 0, seed: 1 }, stopTokenIds: [2], now: o.now, ttlMs: 60_000, deadline: o.now + 300_000, edgeKeyId: 'edge-test' },
    edgeKey.privateKey,
  );
  return { signed, hash, route };
}

/** The edge's check deps over `transport`; `rate` is CHECK_RATE_OVERRIDE (default 1: every job), `key: false` leaves CHECK_SECRET unset. */
export async function checkDeps(o: {
  store: MemoryStore;
  transport: AgentTransport;
  edgeKey: SigningKey;
  now: () => number;
  logs: Record<string, unknown>[];
  rate?: number | null;
  key?: boolean;
}): Promise<CheckDeps> {
  return {
    store: o.store,
    transport: o.transport,
    signingKey: { id: 'edge-test', publicKey: o.edgeKey.publicKey, privateKey: o.edgeKey.privateKey },
    clock: { now: o.now },
    log: (e) => void o.logs.push(e),
    caches: { keys: new TtlCache(1000), models: new TtlCache(1000), modelList: new TtlCache(1000), candidates: new TtlCache<RouteCandidate[]>(60_000), unstakedTraffic: new UnstakedTrafficWindow() },
    config: resolveConfig({}),
    random: () => 0.5,
    checks: { key: o.key === false ? null : await importCheckSecret(new Uint8Array(32).fill(7)), rateOverride: o.rate === undefined ? 1 : o.rate },
  };
}

export interface DisclosureRequest {
  jobId: string;
  hop: number;
  issuedAt: number;
  signature: string;
}

/** A disclosure request (`POST /v1/checks/inputs`) as an agent reads it: null unless the edge signed it. */
export async function verifiedDisclosureRequest(edgeKey: SigningKey, body: string): Promise<DisclosureRequest | null> {
  const r = JSON.parse(body) as DisclosureRequest;
  return (await verifyBytes(edgeKey.publicKey, r.signature, utf8(checkInputsMessage(r)))) ? r : null;
}

/** A check request to `checkerId` (`POST /v1/checks`) as an agent reads it: null unless the edge signed it for that agent. */
export async function verifiedCheckRequest(edgeKey: SigningKey, checkerId: string, init: RequestInit): Promise<CheckRequest | null> {
  const body = String(init.body);
  const headers = init.headers as Record<string, string>;
  const issuedAt = Number(headers[CHECK_ISSUED_AT_HEADER]);
  const ok = await verifyBytes(edgeKey.publicKey, headers[CHECK_SIGNATURE_HEADER]!, utf8(checkRequestMessage(checkerId, issuedAt, await sha256Hex(utf8(body)))));
  return ok ? checkRequestSchema.parse(JSON.parse(body)) : null;
}

/** A loaded span of the model as the check service reads one (which layers, first or last). */
export function spanStub(layers: readonly [number, number]): LoadedSpan {
  return ({ modelId: MODEL, layers, first: layers[0] === 0, last: layers[1] === NUM_LAYERS, manifest: { architecture: { numLayers: NUM_LAYERS } } }) as unknown as LoadedSpan;
}

/** The agent's check service on a free loopback port, erroring as the agent's server does; `url` is its POST /v1/checks. */
export async function serveChecks(checks: CheckService): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => void checks.handle(req, res).catch((err) => sendError(res, toAgentError(err))));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/checks` };
}

/**
 * Posts a check request body to `url`, signed as the edge signs it for `checkerId` (default
 * `checker-1`) at `issuedAt` (default now); `sign: null` sends it unsigned.
 */
export async function postCheck(url: string, text: string, sign: { key: CryptoKey; checkerId?: string; issuedAt?: number } | null): Promise<Response> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (sign) {
    const issuedAt = sign.issuedAt ?? Date.now();
    headers[CHECK_ISSUED_AT_HEADER] = String(issuedAt);
    headers[CHECK_SIGNATURE_HEADER] = await signBytes(sign.key, utf8(checkRequestMessage(sign.checkerId ?? 'checker-1', issuedAt, await sha256Hex(utf8(text)))));
  }
  return fetch(url, { method: 'POST', headers, body: text });
}
