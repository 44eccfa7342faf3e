/**
 * `POST /v1/checks`: re-executes a finished job for the edge (docs/trust.md §2) and answers a
 * verdict signed with this agent's key. A check of the whole route needs an agent holding the
 * whole model; a hop check (`hop` in the request) is run by an agent whose loaded span is exactly
 * that hop's layers (no extra load), or by a whole-model agent, which loads the hop's span. A
 * segment of a hop (`segment` in the request: a chain of agents covers the hop, protocol/segment.ts)
 * is run by the agent holding exactly those layers; a segment that does not end the hop answers
 * the rows it computed (`segmentOutput`) beside the verdict that commits to their hash.
 *
 * Who may ask: the edge, and only the edge. The body is a `checkRequestSchema` job record; the
 * request carries an edge signature over (this agent's id, issuedAt, SHA-256 of the body) so a
 * random caller cannot make the agent burn CPU, a signed request cannot be sent to another agent,
 * and a replay within the window is refused. The embedded ticket must also carry a valid edge
 * signature (its expiry is not enforced: checks run after the job).
 *
 * One check at a time (503 `capacity` when busy), bounded by a timeout (an inconclusive verdict
 * after it). The check opens its own session on the loaded span, never touching live jobs' KV.
 *
 * @example
 * const checks = createCheckService({ agentId, signingKey, edgeKeys: () => keys, span });
 * if (req.method === 'POST' && path === CHECK_PATH) return checks.handle(req, res);
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  CHECK_ISSUED_AT_HEADER,
  CHECK_SIGNATURE_HEADER,
  checkRequestMessage,
  checkRequestSchema,
  decodeDisclosure,
  MAX_CHECK_BODY_BYTES,
  signVerdict,
  type CheckVerdict,
  type HopDisclosure,
} from '../../protocol/check.js';
import { fromUtf8, sha256Hex, utf8 } from '../../protocol/bytes.js';
import { decodeSegmentRows, encodeSegmentRows } from '../../protocol/segment.js';
import { verifyBytes, type SigningKey } from '../../protocol/keys.js';
import { ticketBytes } from '../../protocol/ticket.js';
import type { LoadedSpan } from '../runtime/types.js';
import { runCheck, type RunCheckInput, type SpanLoader } from '../verify/checker.js';
import { runHopCheck, type RunHopCheckInput } from '../verify/hop-check.js';
import { silentLogger, type Logger } from '../log.js';
import { AgentError } from './errors.js';
import { readBody, sendJson } from './http.js';

export interface CheckServiceOptions {
  agentId: string;
  signingKey: SigningKey;
  /** Trusted edge keys by id (read on every request: keys may be rotated). */
  edgeKeys: () => Readonly<Record<string, string>>;
  span: LoadedSpan;
  /**
   * Loads layers of this agent's model as a span of their own (per-hop blame re-runs each hop of
   * a multi-hop route on its disclosed input). Absent: a multi-hop failure names no hop.
   */
  hopSpans?: (layers: readonly [number, number]) => Promise<LoadedSpan>;
  clock?: () => number;
  /** A check that runs longer answers inconclusive (default 20 s). */
  timeoutMs?: number;
  /** How far the signed issuedAt may be from now (default 2 min). */
  windowMs?: number;
  maxBodyBytes?: number;
  log?: Logger;
  /** The checker (a double in unit tests). */
  run?: (input: RunCheckInput) => Promise<CheckVerdict>;
  /** The hop checker (a double in unit tests). */
  runHop?: (input: RunHopCheckInput) => Promise<CheckVerdict>;
}

export interface CheckService {
  /** Whether a check is running now. */
  readonly busy: boolean;
  handle(req: IncomingMessage, res: ServerResponse): Promise<void>;
}

export function createCheckService(opts: CheckServiceOptions): CheckService {
  const clock = opts.clock ?? Date.now;
  const timeoutMs = opts.timeoutMs ?? 20_000;
  const windowMs = opts.windowMs ?? 120_000;
  const maxBody = opts.maxBodyBytes ?? MAX_CHECK_BODY_BYTES;
  const log = opts.log ?? silentLogger;
  const run = opts.run ?? runCheck;
  const runHop = opts.runHop ?? runHopCheck;
  const span = opts.span;
  const hopSpans = opts.hopSpans;
  const loadSpan: SpanLoader = (_dir, layers) =>
    hopSpans ? hopSpans(layers) : Promise.reject(new Error('this checker was started without a loader for hop spans'));
  const whole = span.first && span.last && span.layers[0] === 0 && span.layers[1] === span.manifest.architecture.numLayers;
  /** Signatures seen within the window (replays are refused), bounded. */
  const seen = new Map<string, number>();
  let running: Promise<unknown> | null = null;

  const remember = (sig: string, now: number): boolean => {
    for (const [s, until] of seen) {
      if (until > now && seen.size < 10_000) break;
      seen.delete(s);
    }
    if (seen.has(sig)) return false;
    seen.set(sig, now + 2 * windowMs);
    return true;
  };

  const service: CheckService = {
    get busy() {
      return running !== null;
    },
    async handle(req, res) {
      const signature = req.headers[CHECK_SIGNATURE_HEADER];
      const issuedAt = Number(req.headers[CHECK_ISSUED_AT_HEADER]);
      if (typeof signature !== 'string' || signature.length > 128 || !Number.isSafeInteger(issuedAt)) {
        throw new AgentError('invalid_signature', 'a check request must be signed by the edge');
      }
      const now = clock();
      if (Math.abs(now - issuedAt) > windowMs) throw new AgentError('expired', 'the check request is too old or from the future');
      if (running) throw new AgentError('capacity', 'a check is already running', { retryAfter: 1 });
      const body = await readBody(req, maxBody);
      const message = utf8(checkRequestMessage(opts.agentId, issuedAt, await sha256Hex(body)));
      let trusted = false;
      for (const key of Object.values(opts.edgeKeys())) if (await verifyBytes(key, signature, message)) trusted = true;
      if (!trusted) throw new AgentError('invalid_signature', 'the check request is not signed by a trusted edge key');
      if (!remember(signature, now)) throw new AgentError('replayed', 'this check request was already served');
      let json: unknown;
      try {
        json = JSON.parse(fromUtf8(body));
      } catch {
        throw new AgentError('invalid_json', 'the check request is not JSON');
      }
      const parsed = checkRequestSchema.safeParse(json);
      if (!parsed.success) throw new AgentError('invalid_request', 'the check request does not match the schema');
      const r = parsed.data;
      const ticketKey = opts.edgeKeys()[r.signedTicket.ticket.edgeKeyId];
      if (!ticketKey || !(await verifyBytes(ticketKey, r.signedTicket.signature, ticketBytes(r.signedTicket.ticket)))) {
        throw new AgentError('invalid_ticket', 'the job ticket is not signed by a trusted edge key');
      }
      if (r.signedTicket.ticket.modelId !== span.modelId) throw new AgentError('wrong_model', `this agent checks model ${span.modelId}`);
      const hopLayers = r.hop === undefined ? null : r.signedTicket.ticket.route[r.hop]?.layers;
      if (hopLayers === undefined) throw new AgentError('invalid_request', `the route has no hop ${r.hop}`);
      // A segment of the hop (a chain of checkers covers it) is run by the agent holding exactly those layers.
      const asked = r.segment?.layers ?? hopLayers;
      const exact = asked !== null && span.layers[0] === asked[0] && span.layers[1] === asked[1];
      if (!whole && !exact) {
        throw new AgentError('not_found', asked ? `this agent holds layers [${span.layers.join(', ')}), not [${asked.join(', ')}) of hop ${r.hop}` : 'this agent does not hold the whole model: it checks only hops of its own span');
      }
      let segmentInput: Float32Array | undefined;
      if (r.segment?.input !== undefined) {
        const rows = decodeSegmentRows(r.segment.input);
        if (!rows) throw new AgentError('invalid_request', 'the segment input is not base64url float32 rows');
        segmentInput = rows;
      }
      const disclosures: HopDisclosure[] = [];
      for (const w of r.disclosures ?? []) {
        const d = decodeDisclosure(w);
        if (!d) throw new AgentError('invalid_request', `disclosure of hop ${w.hop} is not valid tensor data`);
        disclosures.push(d);
      }
      if (running) throw new AgentError('capacity', 'a check is already running', { retryAfter: 1 });
      const started = clock();
      /** What a segment that does not end the hop computed: sent back beside the verdict that commits to it. */
      let segmentOutput: Float32Array | undefined;
      const record = {
        ticket: r.signedTicket.ticket,
        promptIds: r.promptIds,
        prefixIds: r.prefixIds,
        attestations: r.attestations,
        ...(disclosures.length ? { disclosures } : {}),
        ...(r.withheld?.length ? { withheld: r.withheld } : {}),
      };
      // The loaded span: the checker opens a session of its own on it and disposes it. A
      // whole-model agent asked for a hop check loads that hop's span (and closes it after).
      const work =
        r.hop === undefined
          ? run({ ...record, modelDir: '', span, loadSpan })
          : runHop({
              ...record,
              hop: r.hop,
              ...(exact ? { span } : { loadSpan: (layers) => loadSpan('', layers, {}) }),
              ...(r.segment ? { segment: { layers: r.segment.layers, ...(segmentInput ? { input: segmentInput } : {}) }, onSegmentOutput: (rows) => (segmentOutput = rows) } : {}),
            });
      running = work.catch(() => undefined).finally(() => (running = null));
      let timer: NodeJS.Timeout | undefined;
      const jobId = r.signedTicket.ticket.jobId;
      const scope = r.hop !== undefined ? { checkedHop: r.hop } : {};
      const verdict = await Promise.race([
        work.catch((err: Error): CheckVerdict => ({ jobId, status: 'inconclusive', reason: 'checker_error', ...scope, detail: `the check failed: ${err.message}`.slice(0, 1000), evidence: {} })),
        new Promise<CheckVerdict>((resolve) => {
          timer = setTimeout(() => resolve({ jobId, status: 'inconclusive', reason: 'checker_error', ...scope, detail: `the check ran past ${timeoutMs} ms`, evidence: {} }), timeoutMs);
        }),
      ]);
      clearTimeout(timer);
      log.info('check done', { jobId, ...(r.hop !== undefined ? { hop: r.hop } : {}), status: verdict.status, reason: verdict.reason, ms: clock() - started });
      const signed = await signVerdict(opts.signingKey.privateKey, opts.agentId, verdict, Math.max(1, clock()));
      // Only rows the signed verdict commits to (a verdict from a timeout or an error has none).
      const handedOn = segmentOutput && verdict.evidence.segment?.outputHash ? { segmentOutput: encodeSegmentRows(segmentOutput) } : {};
      sendJson(res, 200, { ...signed, ...handedOn });
    },
  };
  return service;
}
