/**
 * Soak run (issue 19; a benchmark, not a test): mixed load on a demo-like network for a while —
 * streamed and non-streamed chats, clients that drop mid-stream, and failovers (an agent is
 * frozen with SIGSTOP for a few seconds now and then, so its jobs time out and move) — while the
 * edge's and each agent's resident memory is sampled every few seconds. Prints the errors by kind
 * and, per process, the memory at start, the median of each third of the run and the slope of a
 * least-squares line over the last two thirds (MB per minute): no upward trend means the slope
 * stays near zero and the thirds do not climb.
 *
 *   npm run bench:soak -- [--minutes 10] [--clients 6] [--sample-s 10] [--freeze-every-s 60] [--json FILE]
 */
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { parseSse } from '../protocol/sse.js';
import { groupMembers } from '../scripts/processes.js';
import { startNetwork, type NetworkAgent, type TestNetwork } from '../test/support/network.js';

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    clients: { type: 'string', default: '6' },
    'sample-s': { type: 'string', default: '10' },
    'freeze-every-s': { type: 'string', default: '60' },
    'freeze-s': { type: 'string', default: '6' },
    json: { type: 'string' },
  },
});
const MINUTES = Number(values.minutes);
const CLIENTS = Number(values.clients);
const SAMPLE_MS = Number(values['sample-s']) * 1000;
const FREEZE_EVERY_MS = Number(values['freeze-every-s']) * 1000;
const FREEZE_MS = Number(values['freeze-s']) * 1000;

/** A process's name (`comm`), or '?' when it is gone. */
function comm(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '?';
  }
}

/** Resident memory of one process, bytes (0 when it is gone). */
function rss(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

type Kind = 'stream' | 'json' | 'dropped';
const outcomes = new Map<string, number>();
const count = (key: string) => outcomes.set(key, (outcomes.get(key) ?? 0) + 1);

async function oneRequest(net: TestNetwork, kind: Kind, seed: number): Promise<void> {
  const headers = { authorization: `Bearer ${net.apiKey}`, 'content-type': 'application/json' };
  const body = JSON.stringify({ model: net.modelName, messages: [{ role: 'user', content: `soak ${seed % 97}` }], max_tokens: 24, seed, stream: kind !== 'json' });
  const ctl = new AbortController();
  try {
    const res = await fetch(`${net.edgeUrl}/v1/chat/completions`, { method: 'POST', headers, body, signal: AbortSignal.any([ctl.signal, AbortSignal.timeout(60_000)]) });
    if (!res.ok) {
      count(`${kind}: http ${res.status}`);
      await res.body?.cancel();
      return;
    }
    if (kind === 'json') {
      const j = (await res.json()) as { choices?: { message?: { content?: string } }[] };
      count(typeof j.choices?.[0]?.message?.content === 'string' ? `${kind}: ok` : `${kind}: malformed`);
      return;
    }
    let chunks = 0;
    let errored = false;
    for await (const ev of parseSse(res.body!)) {
      if (ev.data === '[DONE]') break;
      if (ev.data.includes('"error"')) errored = true;
      chunks++;
      if (kind === 'dropped' && chunks >= 2) {
        ctl.abort();
        count(`${kind}: ok`);
        return;
      }
    }
    count(errored ? `${kind}: in-band error` : `${kind}: ok`);
  } catch (err) {
    if (kind === 'dropped' && ctl.signal.aborted) return;
    count(`${kind}: ${(err as Error).name}`);
  }
}

const net = await startNetwork({
  agents: [
    { name: 'head', region: 'eu-west', price: 0.1, layers: [0, 2] },
    { name: 'tail', region: 'eu-west', price: 0.1, layers: [2, 4] },
    { name: 'whole', region: 'eu-west', price: 0.12 },
  ],
});
const started = Date.now();
const samples: { t: number; edge: number; edgeParts: Record<string, number>; agents: Record<string, number> }[] = [];
try {
  await net.waitForAgents(3);
  const edgePid = net.edgeProcess.pid;
  if (edgePid === undefined) throw new Error('the edge is not running');
  const sample = () => {
    // The edge's group: wrangler (node), workerd, and whatever else wrangler runs; by name, so a growth can be placed.
    const edgeParts: Record<string, number> = {};
    for (const pid of groupMembers(edgePid)) edgeParts[`edge: ${comm(pid)}`] = (edgeParts[`edge: ${comm(pid)}`] ?? 0) + rss(pid);
    const edge = Object.values(edgeParts).reduce((s, b) => s + b, 0);
    const agents: Record<string, number> = {};
    for (const a of net.agents) agents[a.name] = rss(a.pid);
    samples.push({ t: (Date.now() - started) / 1000, edge, edgeParts, agents });
  };
  sample();
  const end = started + MINUTES * 60_000;
  const sampler = setInterval(sample, SAMPLE_MS);
  // Failovers: one agent at a time frozen for FREEZE_MS (inter-token timeouts), then thawed.
  let frozen = 0;
  const freezer = setInterval(() => {
    const a: NetworkAgent = net.agents[frozen++ % net.agents.length]!;
    process.kill(a.pid, 'SIGSTOP');
    setTimeout(() => process.kill(a.pid, 'SIGCONT'), FREEZE_MS);
  }, FREEZE_EVERY_MS);
  let seed = 0;
  await Promise.all(
    Array.from({ length: CLIENTS }, async (_, c) => {
      while (Date.now() < end) {
        const r = (seed * 7919 + c) % 10;
        await oneRequest(net, r < 5 ? 'stream' : r < 8 ? 'json' : 'dropped', ++seed);
      }
    }),
  );
  clearInterval(sampler);
  clearInterval(freezer);
  await new Promise((r) => setTimeout(r, FREEZE_MS + 500));
  sample();
} finally {
  for (const a of net.agents) {
    try {
      process.kill(a.pid, 'SIGCONT');
    } catch {
      // gone already
    }
  }
  await net.close();
}

const mb = (b: number) => b / (1 << 20);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
/** Least-squares slope of (t minutes, MB), over the samples from a third of the run on. */
function slopePerMinute(series: { t: number; v: number }[]): number {
  const pts = series.filter((p) => p.t >= series[series.length - 1]!.t / 3);
  const n = pts.length;
  if (n < 2) return 0;
  const mx = pts.reduce((s, p) => s + p.t / 60, 0) / n;
  const my = pts.reduce((s, p) => s + mb(p.v), 0) / n;
  let num = 0;
  let den = 0;
  for (const p of pts) {
    num += (p.t / 60 - mx) * (mb(p.v) - my);
    den += (p.t / 60 - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}
const processes = ['edge', ...new Set(samples.flatMap((x) => Object.keys(x.edgeParts))), ...Object.keys(samples[0]?.agents ?? {})];
const total = [...outcomes.values()].reduce((s, n) => s + n, 0);
console.log(`\nsoak: ${MINUTES} min, ${CLIENTS} clients, ${total} requests, ${samples.length} memory samples, agents frozen for ${FREEZE_MS / 1000} s every ${FREEZE_EVERY_MS / 1000} s`);
console.log('\n| outcome | requests |\n|---|---|');
for (const [k, n] of [...outcomes.entries()].sort()) console.log(`| ${k} | ${n} |`);
console.log('\n| process | RSS at start (MB) | median 1st / 2nd / 3rd third (MB) | max (MB) | slope over the last 2/3 (MB/min) |\n|---|---|---|---|---|');
for (const p of processes) {
  const series = samples.map((s) => ({ t: s.t, v: p === 'edge' ? s.edge : p.startsWith('edge: ') ? s.edgeParts[p] ?? 0 : s.agents[p] ?? 0 }));
  const span = series[series.length - 1]!.t;
  const third = (i: number) => median(series.filter((x) => x.t >= (span * i) / 3 && x.t <= (span * (i + 1)) / 3).map((x) => mb(x.v)));
  console.log(`| ${p} | ${mb(series[0]!.v).toFixed(0)} | ${third(0).toFixed(0)} / ${third(1).toFixed(0)} / ${third(2).toFixed(0)} | ${Math.max(...series.map((x) => mb(x.v))).toFixed(0)} | ${slopePerMinute(series).toFixed(2)} |`);
}
if (values.json) await writeFile(values.json, JSON.stringify({ outcomes: Object.fromEntries(outcomes), samples }, null, 1));
