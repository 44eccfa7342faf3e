/**
 * Chaos: the edge restarts under load, with real processes. Several SDK clients send requests
 * in a loop while the edge (wrangler and its workerd) is killed outright (SIGKILL to its process
 * group: connections reset mid-answer) and started again on the same port.
 *
 * What the SDK retries (sdk/src/retry.ts, client.ts): connection errors (refused, reset, a body
 * cut short), its own timeouts, and statuses 408, 409, 429 and 5xx (or whatever
 * `x-should-retry` says), up to `maxRetries` (default 2) with backoff 0.5 s x 2^n (at most 8 s,
 * up to 25% jitter) or the server's `retry-after` (up to 60 s). A non-streaming completion is
 * retried as a whole, although POST is not idempotent: a retry is a new job (a greedy or seeded
 * request gets the same tokens; the first job, cut off by the crash, is never finished). A
 * stream is retried only until its first token reached the caller; after that a lost connection
 * is the caller's error (`APIConnectionError`), with the text so far a prefix of the answer.
 *
 * So: with enough retries to outlast the restart, every non-streaming request ends with the
 * undisturbed answer, including those that were in flight when the edge died; no request hangs.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { APIConnectionError, APIError, LayerNet, type ChatCompletionCreateParamsNonStreaming } from '../../sdk/src/index.js';
import { processAlive } from '../../scripts/processes.js';
import { startNetwork, type TestNetwork } from '../support/network.js';
import { until } from '../support/network-jobs.js';

let net: TestNetwork;

const PARAMS = {
  messages: [{ role: 'user' as const, content: 'Tell me a long story about layers' }],
  max_tokens: 24,
  temperature: 0,
  seed: 3,
};
const CLIENTS = 4;
/** The whole restart has to fit in the retries: 0.5+1+2+4+8x8 s (less jitter) is ample on a busy machine. */
const MAX_RETRIES = 12;

let reference: string;

beforeAll(async () => {
  net = await startNetwork({
    agents: [
      { name: 'a', region: 'eu-west', price: 0.2 },
      { name: 'b', region: 'eu-west', price: 0.2 },
    ],
  });
  await net.waitForAgents(2);
}, 240_000);

afterAll(async () => {
  await net?.close();
});

interface Outcome {
  client: number;
  startedAt: number;
  endedAt: number;
  /** HTTP attempts the SDK made (1 = no retry). */
  attempts: number;
  text?: string;
  error?: unknown;
}

/** An SDK client that counts its HTTP attempts (each loop runs one request at a time). */
function countingClient(counter: { n: number }): LayerNet {
  return new LayerNet({
    baseURL: net.edgeUrl,
    apiKey: net.apiKey,
    maxRetries: MAX_RETRIES,
    // Per attempt: an attempt that hangs this long is a bug this suite would report.
    timeout: 30_000,
    fetch: (url, init) => {
      counter.n++;
      return fetch(url, init);
    },
  });
}

describe('the edge restarts under load', () => {
  it('serves the reference answer', async () => {
    const sdk = new LayerNet({ baseURL: net.edgeUrl, apiKey: net.apiKey });
    const res = await sdk.chat.completions.create({ model: net.modelName, ...PARAMS } as ChatCompletionCreateParamsNonStreaming);
    reference = res.choices[0]!.message.content ?? '';
    expect(reference.length).toBeGreaterThan(0);
  });

  it('SDK retries carry non-streaming requests over a crash and restart of the edge; none hangs', async () => {
    const oldPid = net.edgeProcess.pid!;
    const agentPids = net.agents.map((a) => a.pid);
    const outcomes: Outcome[] = [];
    const streams: { text: string; error?: unknown; startedAt: number; endedAt: number }[] = [];
    let running = true;

    const loop = async (client: number) => {
      const counter = { n: 0 };
      const sdk = countingClient(counter);
      while (running) {
        counter.n = 0;
        const startedAt = Date.now();
        try {
          const res = await sdk.chat.completions.create({ model: net.modelName, ...PARAMS } as ChatCompletionCreateParamsNonStreaming);
          outcomes.push({ client, startedAt, endedAt: Date.now(), attempts: counter.n, text: res.choices[0]!.message.content ?? '' });
        } catch (error) {
          outcomes.push({ client, startedAt, endedAt: Date.now(), attempts: counter.n, error });
        }
      }
    };
    // One streaming client beside them: retried until its first token, a clear error after.
    const streamLoop = async () => {
      const sdk = countingClient({ n: 0 });
      while (running) {
        const startedAt = Date.now();
        let text = '';
        try {
          const stream = await sdk.chat.completions.create({ model: net.modelName, ...PARAMS, stream: true });
          for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
          streams.push({ text, startedAt, endedAt: Date.now() });
        } catch (error) {
          streams.push({ text, error, startedAt, endedAt: Date.now() });
        }
      }
    };
    const loops = [...Array.from({ length: CLIENTS }, (_, i) => loop(i)), streamLoop()];
    const successes = (after: number) => outcomes.filter((o) => o.text !== undefined && o.startedAt >= after).length;
    const waitFor = async (what: string, done: () => boolean, ms: number) => {
      const deadline = Date.now() + ms;
      while (!done()) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; outcomes so far: ${outcomes.length}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    };

    let killedAt = 0;
    let backAt = 0;
    try {
      await waitFor('load before the crash', () => successes(0) >= CLIENTS, 60_000);
      killedAt = Date.now();
      await net.edgeProcess.kill();
      // Down for a moment: new attempts are refused and retried.
      await new Promise((r) => setTimeout(r, 1_000));
      await net.edgeProcess.start();
      backAt = Date.now();
      await waitFor('load after the restart', () => successes(backAt) >= CLIENTS, 90_000);
    } finally {
      running = false;
      // Every loop ends (its request in flight included): a hang fails here.
      await Promise.race([
        Promise.all(loops),
        new Promise((_, reject) => setTimeout(() => reject(new Error('a client is still waiting 120 s after the load stopped: a hang')), 120_000)),
      ]);
    }

    expect(net.edgeProcess.pid).not.toBe(oldPid);
    // Non-streaming: every request ends with the undisturbed answer, none with an error.
    const failures = outcomes.filter((o) => o.error !== undefined);
    expect(failures.map((f) => String(f.error))).toEqual([]);
    for (const o of outcomes) expect(o.text).toBe(reference);
    // Requests in flight when the edge died were carried over the outage by retries (each loop
    // had one in flight; one may have just made it before the kill landed).
    const carried = outcomes.filter((o) => o.startedAt < killedAt && o.endedAt > backAt);
    expect(carried.length).toBeGreaterThanOrEqual(CLIENTS - 1);
    expect(carried.every((o) => o.attempts >= 2)).toBe(true);
    // Streams: complete and equal to the answer, or a clear error after part of it (never a wrong token).
    expect(streams.length).toBeGreaterThan(0);
    for (const s of streams) {
      if (s.error === undefined) expect(s.text).toBe(reference);
      else {
        expect(s.error instanceof APIConnectionError || s.error instanceof APIError, String(s.error)).toBe(true);
        expect(reference.startsWith(s.text)).toBe(true);
      }
    }
    // A stream opened while the edge was down (or after) is served: retried until its first token.
    expect(streams.some((s) => s.error === undefined && s.endedAt > backAt)).toBe(true);
    // The agents never noticed anything they had to restart for, and heartbeat to the new edge.
    expect(net.agents.map((a) => a.pid)).toEqual(agentPids);
    expect(agentPids.every((pid) => processAlive(pid))).toBe(true);
    await until(
      'heartbeats through the restarted edge',
      async () => {
        const rows = await net.registry.sql<{ n: number }[]>`select count(*)::int as n from agents where last_heartbeat_at > ${new Date(backAt).toISOString()}::timestamptz`;
        return rows[0]!.n === net.agents.length || null;
      },
      { timeoutMs: 20_000, net },
    );
  }, 300_000);
});
