/**
 * Chains of checkers covering a hop (edge/checks/chain-checks.ts): which chains the edge builds,
 * and how it checks each link before the last segment's verdict counts — fake checkers with real
 * keys, signed verdicts as agents sign them, the edge's memory store.
 */
import { beforeEach, describe, expect, it } from 'vitest';
import { askChain, coveringChains, segmentCheckRequest } from '../../edge/checks/chain-checks.js';
import type { CheckDeps, CheckStep } from '../../edge/checks/run-checks.js';
import type { AgentTransport } from '../../edge/deps.js';
import { createMemoryStore, type MemoryStore } from '../../edge/store/memory.js';
import type { RouteCandidate } from '../../db/registry-contract.js';
import { toBase64Url } from '../../protocol/bytes.js';
import { signVerdict, type CheckRequest, type CheckVerdict } from '../../protocol/check.js';
import { generateSigningKey, type SigningKey } from '../../protocol/keys.js';
import { decodeSegmentRows, rowsHash } from '../../protocol/segment.js';
import { checkDeps, issueTestTicket, MODEL, registerCheckAgent, type CheckAgent } from '../support/check-fixtures.js';

const NOW = 1_700_000_000_000;
let store: MemoryStore;
let edgeKey: SigningKey;
let logs: Record<string, unknown>[];
let agents: Map<string, CheckAgent & { layers: [number, number] }>;
/** What each fake segment checker does when asked (by agent id). */
let behave: Map<string, (req: CheckRequest) => Promise<unknown>>;
/** Requests each agent received, in order. */
let received: { agentId: string; request: CheckRequest }[];

const transport: AgentTransport = async (url, init) => {
  const agent = [...agents.values()].find((a) => url.startsWith(a.endpoint));
  if (!agent) throw new TypeError('fetch failed');
  const request = JSON.parse(String(init?.body)) as CheckRequest;
  received.push({ agentId: agent.id, request });
  const answer = await behave.get(agent.id)!(request);
  return Response.json(answer);
};

async function add(name: string, owner: string, layers: [number, number]): Promise<string> {
  const a = await registerCheckAgent(store, { name, owner, layers, now: NOW });
  agents.set(a.id, { ...a, layers });
  return a.id;
}

const rows = Float32Array.from({ length: 6 * 4 }, (_, i) => Math.sin(i));

/** A segment checker that re-runs its layers into `out` and hands them on, signing what it was given and returned. */
function handsOn(id: string, out: Float32Array, opts: { lieAboutOutput?: boolean } = {}) {
  return async (req: CheckRequest) => {
    const a = agents.get(id)!;
    const input = req.segment?.input ? decodeSegmentRows(req.segment.input)! : undefined;
    const verdict: CheckVerdict = {
      jobId: req.signedTicket.ticket.jobId,
      status: 'pass',
      checkedHop: req.hop!,
      detail: 'handed on',
      evidence: { segment: { layers: a.layers, ...(input ? { inputHash: await rowsHash(input) } : {}), outputHash: await rowsHash(out) } },
    };
    const sent = opts.lieAboutOutput ? out.map((x) => x + 1) : out;
    return { ...(await signVerdict(a.key.privateKey, id, verdict, NOW)), segmentOutput: toBase64Url(new Uint8Array(sent.buffer)) };
  };
}

/** The last segment: judges the hop on the rows it got (fail: names `accused` at hop 0). */
function judges(id: string, status: 'pass' | 'fail', accused: string, opts: { claimInput?: string } = {}) {
  return async (req: CheckRequest) => {
    const a = agents.get(id)!;
    const input = decodeSegmentRows(req.segment!.input!)!;
    const verdict: CheckVerdict = {
      jobId: req.signedTicket.ticket.jobId,
      status,
      ...(status === 'fail' ? { reason: 'hop_output_mismatch' as const, hop: 0, agentId: accused } : {}),
      checkedHop: req.hop!,
      detail: 'judged',
      evidence: { segment: { layers: a.layers, inputHash: opts.claimInput ?? (await rowsHash(input)) } },
    };
    return signVerdict(a.key.privateKey, id, verdict, NOW);
  };
}

let head: string;
let tail: string;
let b01: string;
let b12: string;
let c01: string;
let c12: string;
let deps: CheckDeps;
let request: CheckRequest;
let candidates: RouteCandidate[];

beforeEach(async () => {
  store = createMemoryStore();
  edgeKey = await generateSigningKey();
  logs = [];
  agents = new Map();
  behave = new Map();
  received = [];
  head = await add('head', 'owner-a', [0, 2]);
  tail = await add('tail', 'owner-a', [2, 4]);
  b01 = await add('b01', 'owner-b', [0, 1]);
  b12 = await add('b12', 'owner-b', [1, 2]);
  c01 = await add('c01', 'owner-c', [0, 1]);
  c12 = await add('c12', 'owner-c', [1, 2]);
  deps = await checkDeps({ store, transport, edgeKey, now: () => NOW, logs });
  const { signed } = await issueTestTicket(store, edgeKey, { jobId: 'job_chain', hopIds: [head, tail], promptIds: [1, 5, 6], now: NOW });
  request = { signedTicket: signed, promptIds: [1, 5, 6], prefixIds: [], attestations: [] } as unknown as CheckRequest;
  candidates = await store.listRouteCandidates(MODEL, { heartbeatAfter: 0, limit: 100 });
});

const route = () => request.signedTicket.ticket.route;
const ids = (chain: RouteCandidate[]) => chain.map((c) => c.agentId);

describe('coveringChains', () => {
  it('builds chains of independent agents whose spans cover the hop exactly, each ending at another agent', async () => {
    // Of the route's owner: never part of a chain.
    await add('a01', 'owner-a', [0, 1]);
    candidates = await store.listRouteCandidates(MODEL, { heartbeatAfter: 0, limit: 100 });
    const chains = await coveringChains(deps, candidates, route(), 0);
    expect(chains).toHaveLength(2);
    for (const ch of chains) {
      expect(ch.map((c) => c.layers)).toEqual([[0, 1], [1, 2]]);
      expect(ch.every((c) => c.ownerAccountId !== 'owner-a')).toBe(true);
    }
    expect(new Set(chains.map((ch) => ch.at(-1)!.agentId)).size).toBe(2);
    // The tail's [2, 4) has no chain: nobody holds a part of it.
    expect(await coveringChains(deps, candidates, route(), 1)).toEqual([]);
  });

  it('leaves out excluded agents, held or accused ones, and chains longer than allowed', async () => {
    const chains = await coveringChains(deps, candidates, route(), 0, { exclude: new Set([b01, b12]) });
    expect(chains.map(ids)).toEqual([[c01, c12]]);
    expect(await coveringChains(deps, candidates, route(), 0, { maxSegments: 1 })).toEqual([]);
    const marked = candidates.map((c) => (c.agentId === c12 ? { ...c, held: true } : c.agentId === b12 ? { ...c, inDispute: true } : c));
    expect(await coveringChains(deps, marked, route(), 0)).toEqual([]);
  });
});

describe('askChain', () => {
  it('hands the first segment\'s rows to the last, which judges the hop; the first segment\'s signed verdict comes along', async () => {
    behave.set(b01, handsOn(b01, rows));
    behave.set(b12, judges(b12, 'fail', head));
    const [chain] = await coveringChains(deps, candidates, route(), 0, { exclude: new Set([c01, c12]) });
    const steps: CheckStep[] = [];
    const answer = await askChain(deps, chain!, request, 0, () => 10_000, steps);
    expect(answer?.verdict).toMatchObject({ status: 'fail', hop: 0, agentId: head, checkedHop: 0 });
    expect(answer?.via.map((v) => v.checkerId)).toEqual([b01]);
    expect(steps).toEqual([
      { checkerId: b01, status: 'pass' },
      { checkerId: b12, status: 'fail' },
    ]);
    // The second segment got exactly the rows, and no disclosure of the hop's input.
    const second = received.find((r) => r.agentId === b12)!.request;
    expect(decodeSegmentRows(second.segment!.input!)).toEqual(rows);
    expect(second.segment!.layers).toEqual([1, 2]);
    expect(received.find((r) => r.agentId === b01)!.request.segment).toEqual({ layers: [0, 1] });
  });

  it('a segment whose rows are not those its verdict commits to breaks the chain: no verdict, nobody blamed, the next never asked', async () => {
    behave.set(b01, handsOn(b01, rows, { lieAboutOutput: true }));
    behave.set(b12, judges(b12, 'fail', head));
    const [chain] = await coveringChains(deps, candidates, route(), 0, { exclude: new Set([c01, c12]) });
    expect(await askChain(deps, chain!, request, 0, () => 10_000, [])).toBeNull();
    expect(received.map((r) => r.agentId)).toEqual([b01]);
    expect(logs.some((l) => l.msg === 'a chain of hop checkers broke: the hop stays unchecked by it')).toBe(true);
  });

  it('a last segment that says it ran on other rows than it was handed does not count', async () => {
    behave.set(b01, handsOn(b01, rows));
    behave.set(b12, judges(b12, 'fail', head, { claimInput: 'f'.repeat(64) }));
    const [chain] = await coveringChains(deps, candidates, route(), 0, { exclude: new Set([c01, c12]) });
    expect(await askChain(deps, chain!, request, 0, () => 10_000, [])).toBeNull();
  });

  it('a first segment that answers anything but a committed hand-on ends the chain', async () => {
    behave.set(b01, async (req: CheckRequest) => signVerdict(agents.get(b01)!.key.privateKey, b01, { jobId: req.signedTicket.ticket.jobId, status: 'inconclusive', reason: 'checker_error', checkedHop: 0, detail: 'runtime failed', evidence: {} }, NOW));
    behave.set(b12, judges(b12, 'pass', head));
    const [chain] = await coveringChains(deps, candidates, route(), 0, { exclude: new Set([c01, c12]) });
    expect(await askChain(deps, chain!, request, 0, () => 10_000, [])).toBeNull();
    expect(received.map((r) => r.agentId)).toEqual([b01]);
  });
});

describe('segmentCheckRequest', () => {
  it('sends each segment only the boundary it needs', () => {
    const disclosed = {
      ...request,
      disclosures: [
        { hop: 0, dtype: 'float32' as const, outputs: ['AAAA'] },
        { hop: 1, dtype: 'float32' as const, inputs: ['AAAA'], outputs: ['BBBB'] },
      ],
    };
    // Hop 1 of [2, 4): its first segment needs its input (boundary 1), its last the hop's end (the last hop: none).
    const firstOf1 = segmentCheckRequest(disclosed, 1, [2, 3], [2, 4]);
    expect(firstOf1.disclosures).toEqual([{ hop: 0, dtype: 'float32', outputs: ['AAAA'] }]);
    const lastOf0 = segmentCheckRequest(disclosed, 0, [1, 2], [0, 2], rows);
    expect(lastOf0.disclosures).toEqual([{ hop: 0, dtype: 'float32', outputs: ['AAAA'] }]);
    expect(lastOf0.segment?.input).toBe(toBase64Url(new Uint8Array(rows.buffer)));
    const firstOf0 = segmentCheckRequest(disclosed, 0, [0, 1], [0, 2]);
    expect(firstOf0.disclosures).toBeUndefined();
  });
});
