/**
 * Makes one chat completion with `verify: true` and prints which agents computed which layers,
 * what the route cost, and the attestation chain the SDK re-verified against the registry's keys.
 *
 * Run: `node --import tsx examples/show-route.ts "Hello"` (reads .dev/stack.json from `npm start`,
 * or LAYERNET_BASE_URL / LAYERNET_API_KEY / LAYERNET_MODEL).
 */
import { pathToFileURL } from 'node:url';
import type { LayerNet, RoutePreferencesParam } from '../sdk/src/index.js';
import { connect } from './stack.js';

export async function showRoute(client: LayerNet, model: string, prompt: string, route?: RoutePreferencesParam): Promise<string[]> {
  const lines: string[] = [];
  const completion = await client.chat.completions.create(
    { model, messages: [{ role: 'user', content: prompt }], max_tokens: 16, ...(route ? { route } : {}) },
    { verify: true },
  );
  lines.push(`answer: ${JSON.stringify(completion.choices[0]?.message.content)}`);
  lines.push(`route (${completion.route.attempts} attempt(s), $${completion.route.price}/M tokens):`);
  for (const [i, hop] of completion.route.hops.entries()) {
    lines.push(`  hop ${i}: layers [${hop.layers[0]}, ${hop.layers[1]}) on agent ${hop.agent_id} (pool ${hop.pool_id}, ${hop.region})`);
  }
  const att = completion.attestation;
  lines.push(`edge says: verified=${att.verified}, ${att.chunks} chunks, chain head ${att.chain_head?.slice(0, 16)}…`);
  const v = completion.verification!;
  lines.push(`SDK re-verified: ${v.chunks} chunks over ${v.attempts} attempt(s), tickets signed by edge key ${v.edgeKeyId}, agents ${v.agents.join(', ')}`);
  lines.push(`  tokens: [${v.tokenIds.join(', ')}]`);
  const chain = await client.jobs.attestation(v.jobId);
  for (const [i, a] of chain.attempts.entries()) {
    const t = a.ticket.ticket;
    lines.push(`  attempt ${i + 1} (${a.outcome}): ticket ${t.jobId}, prefix ${t.prefixTokens} tokens, ${a.chunks.length} chunks, route ${t.route.map((h) => `${h.agentId}[${h.layers[0]},${h.layers[1]})`).join(' -> ')}`);
  }
  return lines;
}

async function main(): Promise<void> {
  const prompt = process.argv.slice(2).join(' ') || 'Hello';
  const { client, model } = await connect();
  for (const line of await showRoute(client, model, prompt)) console.log(line);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    console.error(err instanceof Error ? `${err.name}: ${err.message}` : err);
    process.exit(1);
  });
}
