/**
 * Chaos: the registry goes away and comes back, with real processes. The registry is the
 * embedded PGlite server in a process of its own (test/support/registry-process.ts), so it can
 * be stopped (SIGTERM: its port closes), frozen (SIGSTOP: connections accepted, never answered)
 * and started again on the same port with its data; the edge runs in workerd, the agent is a
 * `pool-agent serve` process. (With DATABASE_URL set, the other suites use that server; this one
 * still runs its own embedded registry, the one it can stop.)
 *
 * What a client must see: a request already streaming when the registry stops still gets every
 * token (tokens come from agents, not from the registry); requests while it is down get 503 with
 * `retry-after` (not a 500, not a hang), so an SDK's retries carry them over a short outage; once
 * it is back, the same edge and agents serve again without anything being restarted.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LayerNet, ServiceUnavailableError } from '../../sdk/src/index.js';
import { processAlive } from '../../scripts/processes.js';
import { startNetwork, type TestNetwork } from '../support/network.js';
import { agentRow, until } from '../support/network-jobs.js';
import { startRegistryProcess, type RegistryProcess } from '../support/registry-process.js';
import { chat, jobRecord, readStream, HANG_MS } from '../support/chaos.js';

let net: TestNetwork;
let registry: RegistryProcess;
let edgePid: number;

/** Greedy, so every run of it gives the same tokens. */
const GREEDY = { max_tokens: 60, temperature: 0, seed: 11 };
let reference: { text: string; tokens: number[] };

beforeAll(async () => {
  registry = await startRegistryProcess();
  net = await startNetwork({ database: registry, agents: [{ name: 'a', region: 'eu-west', price: 0.2 }] });
  await net.waitForAgents(1);
  edgePid = net.edgeProcess.pid!;
}, 240_000);

afterAll(async () => {
  registry?.resume();
  await net?.close();
});

interface ErrorBody {
  error: { code: string; type: string; message: string };
}

/** A 503 with a usable retry-after and the error envelope, answered in bounded time. */
async function expectRetryLater(res: Response, what: string): Promise<void> {
  const text = await res.text();
  expect(res.status, `${what}: ${text}`).toBe(503);
  expect(Number(res.headers.get('retry-after')), what).toBeGreaterThanOrEqual(1);
  const body = JSON.parse(text) as ErrorBody;
  expect(body.error.type, what).toBe('service_unavailable');
  expect(body.error.message, what).toMatch(/registry/);
  expect(res.headers.get('x-request-id'), what).toBeTruthy();
}

const get = (path: string) => fetch(`${net.edgeUrl}${path}`, { headers: { authorization: `Bearer ${net.apiKey}` }, signal: AbortSignal.timeout(HANG_MS) });

describe('the registry stops and comes back', () => {
  it('serves the reference answer while the registry is up', async () => {
    const res = await chat(net, GREEDY);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { choices: { message: { content: string } }[]; attestation: { job_id: string } };
    reference = { text: body.choices[0]!.message.content, tokens: (await jobRecord(net, body.attestation.job_id)).token_ids };
    expect(reference.tokens.length).toBeGreaterThan(20);
  });

  it('a stream already running when the registry stops still ends with every token', async () => {
    const res = await chat(net, { ...GREEDY, stream: true });
    expect(res.status).toBe(200);
    let stoppedAt = -1;
    const answer = await readStream(res, async (n) => {
      if (n === 2) {
        await registry.stop();
        stoppedAt = n;
      }
    });
    expect(stoppedAt).toBe(2);
    expect(registry.running).toBe(false);
    expect(answer.error).toBeUndefined();
    expect(answer.done).toBe(true);
    expect(answer.finish?.attestation.verified).toBe(true);
    expect(answer.text).toBe(reference.text);
  });

  it('while it is down, answers 503 with retry-after (not 500, not a hang); the edge itself stays healthy', async () => {
    expect(registry.running).toBe(false);
    await expectRetryLater(await chat(net, GREEDY), 'chat');
    // A stream's early failure is still a real HTTP status.
    await expectRetryLater(await chat(net, { ...GREEDY, stream: true }), 'chat stream');
    await expectRetryLater(await get('/v1/models'), 'models');
    await expectRetryLater(await get('/v1/pools'), 'pools');
    await expectRetryLater(await get(`/v1/jobs/${crypto.randomUUID()}/attestation`), 'attestation');
    const health = await get('/healthz');
    expect(health.status).toBe(200);
    await health.body?.cancel();
    // The SDK without retries: a ServiceUnavailableError that says how long to wait.
    const sdk = new LayerNet({ baseURL: net.edgeUrl, apiKey: net.apiKey, maxRetries: 0 });
    const err = await sdk.chat.completions.create({ model: net.modelName, messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ServiceUnavailableError);
    expect((err as ServiceUnavailableError).headers.get('retry-after')).toMatch(/^\d+$/);
  });

  it('an SDK request sent during the outage is carried over by its retries once the registry is back', async () => {
    const statuses: number[] = [];
    const sdk = new LayerNet({
      baseURL: net.edgeUrl,
      apiKey: net.apiKey,
      // retry-after is 2 s: enough tries to outlast a registry restart on a busy machine.
      maxRetries: 15,
      fetch: async (url, init) => {
        const res = await fetch(url, init);
        statuses.push(res.status);
        return res;
      },
    });
    const pending = sdk.chat.completions.create({ model: net.modelName, messages: [{ role: 'user', content: 'Tell me a long story about layers' }], ...GREEDY });
    await until('the SDK to meet the outage', async () => (statuses.length > 0 ? true : null), { timeoutMs: 20_000 });
    await registry.start();
    const answer = await pending;
    expect(statuses[0]).toBe(503);
    expect(statuses.at(-1)).toBe(200);
    expect(answer.choices[0]!.message.content).toBe(reference.text);
  });

  it('recovers without restarting anything: same edge and agent, records written, heartbeats back', async () => {
    expect(net.edgeProcess.pid).toBe(edgePid);
    const agent = net.agents[0]!;
    expect(processAlive(agent.pid)).toBe(true);
    const res = await chat(net, GREEDY);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { choices: { message: { content: string } }[]; attestation: { job_id: string } };
    expect(body.choices[0]!.message.content).toBe(reference.text);
    expect((await jobRecord(net, body.attestation.job_id)).token_ids).toEqual(reference.tokens);
    const back = Date.now();
    // The agent's heartbeats (through the edge) reach the registry again.
    await until('a heartbeat after the outage', async () => ((await agentRow(net, agent.id)).lastHeartbeatAt?.getTime() ?? 0) > back || null, { timeoutMs: 20_000, net });
    await expectModels(200);
  });

  it('a registry that hangs (SIGSTOP) is a 503 with retry-after too, and SIGCONT recovers', async () => {
    registry.pause();
    try {
      // Connections are accepted by the kernel and never answered: the edge gives up on its own.
      await expectRetryLater(await chat(net, GREEDY), 'chat to a hung registry');
    } finally {
      registry.resume();
    }
    await expectModels(200);
    const res = await chat(net, GREEDY);
    expect(res.status).toBe(200);
    expect(((await res.json()) as { choices: { message: { content: string } }[] }).choices[0]!.message.content).toBe(reference.text);
  });
});

async function expectModels(status: number): Promise<void> {
  const res = await get('/v1/models');
  expect(res.status, await res.clone().text()).toBe(status);
  await res.body?.cancel();
}
