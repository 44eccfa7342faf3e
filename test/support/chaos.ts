/**
 * What the chaos suites (test/integration/chaos-*.test.ts) share: a chat request with a hang
 * detector, a streamed answer read to its end (text, in-band error, finish event), the job's
 * recorded token ids, and the registry reset that makes every agent routable again.
 *
 * @example
 * const res = await chat(net, { max_tokens: 40, stream: true });
 * const answer = await readStream(res, (n) => { if (n === 3) stopSomething(); });
 * expect(answer.error).toBeUndefined();
 */
import { parseSse } from '../../protocol/sse.js';
import type { TestNetwork } from './network.js';
import { until } from './network-jobs.js';

/** Longer than any answer these suites ask for: a request still open after it is a hang. */
export const HANG_MS = 60_000;

/** POST /v1/chat/completions with the network's key and model; aborted (throws) after `hangMs`. */
export function chat(net: TestNetwork, body: Record<string, unknown>, hangMs = HANG_MS): Promise<Response> {
  return fetch(`${net.edgeUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${net.apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: net.modelName, messages: [{ role: 'user', content: 'Tell me a long story about layers' }], ...body }),
    signal: AbortSignal.timeout(hangMs),
  });
}

export interface StreamedAnswer {
  text: string;
  /** Content deltas received. */
  deltas: number;
  /** The in-band error event, if one came. */
  error?: { code: string; message: string };
  /** The last event's finish_reason, route and attestation. */
  finish?: { reason: string; route: { hops: { agent_id: string }[]; attempts: number }; attestation: { job_id: string; verified: boolean } };
  /** Whether `[DONE]` closed the stream. */
  done: boolean;
}

/** Reads an SSE chat stream to its end; `onDelta(n)` runs after the n-th content delta (awaited). */
export async function readStream(res: Response, onDelta?: (n: number) => unknown): Promise<StreamedAnswer> {
  const out: StreamedAnswer = { text: '', deltas: 0, done: false };
  for await (const ev of parseSse(res.body!)) {
    if (ev.data === '[DONE]') {
      out.done = true;
      break;
    }
    const data = JSON.parse(ev.data) as {
      error?: StreamedAnswer['error'];
      choices?: { delta?: { content?: string }; finish_reason?: string | null }[];
      route?: NonNullable<StreamedAnswer['finish']>['route'];
      attestation?: NonNullable<StreamedAnswer['finish']>['attestation'];
    };
    if (data.error) {
      out.error = data.error;
      continue;
    }
    const choice = data.choices?.[0];
    const delta = choice?.delta?.content ?? '';
    if (delta) {
      out.text += delta;
      out.deltas++;
      await onDelta?.(out.deltas);
    }
    if (choice?.finish_reason && data.route && data.attestation) out.finish = { reason: choice.finish_reason, route: data.route, attestation: data.attestation };
  }
  return out;
}

export interface JobRecord {
  token_ids: number[];
  /** One per route tried, in order; each ticket names its route. */
  attempts: { outcome: 'completed' | 'failed' | 'cancelled'; ticket: { ticket: { route: { agentId: string }[] } } }[];
}

/** The job's attestation record (GET /v1/jobs/:id/attestation), once it is written with tokens. */
export function jobRecord(net: TestNetwork, jobId: string, timeoutMs = 20_000): Promise<JobRecord> {
  return until(
    `job ${jobId}'s attestation record`,
    async () => {
      const res = await fetch(`${net.edgeUrl}/v1/jobs/${jobId}/attestation`, { headers: { authorization: `Bearer ${net.apiKey}` } });
      if (res.status !== 200) {
        await res.body?.cancel();
        return null;
      }
      const body = (await res.json()) as JobRecord;
      return body.token_ids.length > 0 ? body : null;
    },
    { timeoutMs, net },
  );
}

/**
 * Every agent routable again: no cooldown (a failed attempt sets one in the registry), reputation
 * back to 0.5, then waits out the edge's candidate cache (300 ms in test networks).
 */
export async function clearCooldowns(net: TestNetwork): Promise<void> {
  await net.registry.sql`update agents set cooldown_until = null, reputation = 0.5, probation = false`;
  await new Promise((r) => setTimeout(r, 1_000));
}

/** Only `ids` routable: every other agent gets a cooldown of an hour (undone by `clearCooldowns`). */
export async function onlyRoutable(net: TestNetwork, ids: string[]): Promise<void> {
  await net.registry.sql`update agents set cooldown_until = case when id::text = any(string_to_array(${ids.join(',')}, ',')) then null else now() + interval '1 hour' end`;
  await new Promise((r) => setTimeout(r, 1_000));
}

/** The registry's cooldown reason of each agent that has one now, by agent id. */
export async function cooledDown(net: TestNetwork): Promise<Map<string, string | null>> {
  const rows = await net.registry.sql<{ id: string; reason: string | null }[]>`select id::text as id, cooldown_reason as reason from agents where cooldown_until > now()`;
  return new Map(rows.map((r) => [r.id, r.reason]));
}

/** The agent's cooldown reason once the edge's write of it (after the response, waitUntil) landed. */
export function cooldownOf(net: TestNetwork, agentId: string, timeoutMs = 10_000): Promise<string | null> {
  return until(`a cooldown of agent ${agentId}`, async () => {
    const cooled = await cooledDown(net);
    return cooled.has(agentId) ? { reason: cooled.get(agentId)! } : null;
  }, { timeoutMs, net }).then((r) => r.reason);
}
