/**
 * What keeping links for the next job saves: opening a link to an agent (TCP connect, the HTTP
 * upgrade, the agent's check of the job's signed ticket) against one frame's round trip on a
 * link already open (a close frame, answered), side by side in one process over loopback. Over a
 * real network the opening also costs the TCP (and TLS) round trips, which this does not show.
 *
 *   npm run bench:link -- [--opens 300]
 */
import { parseArgs } from 'node:util';
import { createTestEdge, startChain } from '../test/support/agents.js';
import { fakeModel, fakeSpan } from '../test/support/fake-span.js';
import { dialLink, LINK_HOP_HEADER, LINK_PATH, LINK_TICKET_HEADER } from '../pool-agent/server/link.js';
import { toBase64Url, utf8 } from '../protocol/bytes.js';
import { encodeFrame } from '../protocol/frame.js';

const { values } = parseArgs({ options: { opens: { type: 'string', default: '300' } } });
const OPENS = Number(values.opens);
const model = await fakeModel({ numLayers: 4 });
const edge = await createTestEdge();
const chain = await startChain({ edge, spans: [fakeSpan(model, [0, 2]), fakeSpan(model, [2, 4])], agentIdPrefix: 'bench' });
try {
  const url = new URL(LINK_PATH, chain.agents[1]!.url).toString();
  const opens: number[] = [];
  const frames: number[] = [];
  for (let i = 0; i < OPENS; i++) {
    const { signed, hash } = await edge.ticket({ route: chain.route, modelId: model.modelId, promptIds: [1, 2, 3], maxTokens: 4 });
    let t = performance.now();
    const link = await dialLink(url, { timeoutMs: 5_000, maxPayloadBytes: 1024, headers: { [LINK_TICKET_HEADER]: toBase64Url(utf8(JSON.stringify(signed))), [LINK_HOP_HEADER]: '1' } });
    opens.push(performance.now() - t);
    t = performance.now();
    await link.request(encodeFrame({ kind: 'close', meta: { jobId: signed.ticket.jobId, ticketHash: hash, hop: 1 } }), 5_000);
    frames.push(performance.now() - t);
    link.close();
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  console.log(`opening a link: median ${median(opens).toFixed(3)} ms; a frame's round trip on an open link: median ${median(frames).toFixed(3)} ms (${OPENS} of each)`);
  console.log(JSON.stringify({ bench: 'link-open', opens: OPENS, openMs: median(opens), frameMs: median(frames) }));
} finally {
  await chain.close();
}
