/**
 * End-to-end time to first token through the edge (workerd via wrangler dev) for the tiny
 * model on loopback, against a real registry and a real pool agent; side by side with the
 * edge's bare round trip (`/healthz`) and a whole non-streamed answer, in the same run.
 *
 *   node --import tsx bench/e2e-ttft.ts [--requests 40] [--hops 1|2]
 *
 * Target (issue 4): TTFT < 100 ms.
 */
import { parseSse } from '../protocol/sse.js';
import { startNetwork } from '../test/support/network.js';

const argv = process.argv.slice(2);
const arg = (name: string, fallback: number) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? Number(argv[i + 1]) : fallback;
};
const requests = arg('requests', 40);
const hops = arg('hops', 1);

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
};

const net = await startNetwork({
  agents: hops === 1 ? [{ name: 'whole', region: 'eu-west', price: 0.1 }] : [
    { name: 'head', region: 'eu-west', price: 0.1, layers: [0, 2] },
    { name: 'tail', region: 'eu-west', price: 0.1, layers: [2, 4] },
  ],
});
try {
  await net.waitForAgents(hops);
  const headers = { authorization: `Bearer ${net.apiKey}`, 'content-type': 'application/json' };
  const body = (stream: boolean) => JSON.stringify({ model: net.modelName, messages: [{ role: 'user', content: 'How fast is the first token?' }], max_tokens: 16, seed: 1, stream });
  const ttft: number[] = [];
  const health: number[] = [];
  const whole: number[] = [];
  for (let i = 0; i < requests + 5; i++) {
    let t = performance.now();
    await (await fetch(`${net.edgeUrl}/healthz`)).text();
    const h = performance.now() - t;

    t = performance.now();
    const res = await fetch(`${net.edgeUrl}/v1/chat/completions`, { method: 'POST', headers, body: body(true) });
    let first = 0;
    for await (const ev of parseSse(res.body!)) {
      if (ev.data === '[DONE]') break;
      const d = JSON.parse(ev.data) as { choices?: { delta?: { content?: string } }[] };
      if (!first && d.choices?.[0]?.delta?.content) first = performance.now() - t;
    }
    t = performance.now();
    await (await fetch(`${net.edgeUrl}/v1/chat/completions`, { method: 'POST', headers, body: body(false) })).json();
    const w = performance.now() - t;
    if (i >= 5) {
      ttft.push(first);
      health.push(h);
      whole.push(w);
    }
  }
  const row = (name: string, xs: number[]) => `${name.padEnd(34)} median ${quantile(xs, 0.5).toFixed(1).padStart(6)} ms   p90 ${quantile(xs, 0.9).toFixed(1).padStart(6)} ms   p99 ${quantile(xs, 0.99).toFixed(1).padStart(6)} ms`;
  console.log(`tiny model, ${hops} hop(s), ${requests} requests, edge in workerd, registry ${net.db.kind}`);
  console.log(row('edge /healthz round trip', health));
  console.log(row('time to first token (stream)', ttft));
  console.log(row('whole answer, 16 tokens', whole));
  console.log(`ttft / healthz (median): ${(quantile(ttft, 0.5) / quantile(health, 0.5)).toFixed(1)}x`);
} finally {
  await net.close();
}
