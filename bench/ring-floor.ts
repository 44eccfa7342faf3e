/**
 * The floor under `bench:chain`'s chain of 3: the same three spans of the `small` model in three
 * processes, passing raw activations round a ring over loopback TCP (length-prefixed, no frames
 * meta, no sessions, no attestation, no HTTP), the head process sampling nothing and the last one
 * sampling greedily. Interleaved with the unsplit model and the same three spans run one after the
 * other in the head process. What the agents' chain loses beyond this ring is their protocol; what
 * the ring loses is the machine's (the split sessions and the cross-process hand-offs). Each round
 * also prints every span's decode time in the head process and in its own ring process: a span
 * that runs after its process sat idle for most of a token runs slower than the same span run
 * right after another one in a busy process (caches gone cold), which no protocol can win back.
 *
 *   npm run bench:ring -- [--model .models/small] [--tokens 64] [--rounds 3] [--threads 1]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadManifest } from '../pool-agent/model/build.js';
import { loadSpan } from '../pool-agent/runtime/span.js';
import { sampleToken } from '../pool-agent/runtime/sampler.js';
import { generate } from '../pool-agent/runtime/pipeline.js';
import type { LoadedSpan, SpanOutput, SpanSession } from '../pool-agent/runtime/types.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: '.models/small' },
    tokens: { type: 'string', default: '64' },
    rounds: { type: 'string', default: '3' },
    threads: { type: 'string', default: '1' },
    /** Internal: run as a ring member holding this span ("a:b"). */
    member: { type: 'string' },
  },
});
const MODEL = resolve(values.model!);
const THREADS = Number(values.threads);
const GREEDY = { temperature: 0, topP: 1, topK: 0, seed: 1 };
const RESET = 0xffffffff;
const MAX_MESSAGE = 64 << 20;

/** Splits a byte stream into length-prefixed messages (u32 LE length, then the bytes). */
function onMessages(socket: Socket, fn: (msg: Uint8Array) => void): void {
  let buf: Buffer = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    while (buf.length >= 4) {
      const n = buf.readUInt32LE(0);
      if (n > MAX_MESSAGE) throw new Error(`message of ${n} bytes`);
      if (buf.length < 4 + n) break;
      fn(Uint8Array.prototype.slice.call(buf, 4, 4 + n));
      buf = buf.subarray(4 + n);
    }
  });
}
function send(socket: Socket, bytes: Uint8Array): void {
  const head = Buffer.alloc(4);
  head.writeUInt32LE(bytes.byteLength);
  socket.write(Buffer.concat([head, bytes]));
}
const u32 = (n: number) => new Uint8Array(Uint32Array.of(n).buffer);
const tokenOf = (out: SpanOutput): number => {
  if (out.kind !== 'logits') throw new Error('the last span returned hidden states');
  const vocab = out.logits.length / out.logitsKept;
  return sampleToken(out.logits.subarray((out.logitsKept - 1) * vocab), GREEDY, 0);
};

if (values.member) {
  // A ring member: listens, then forwards every message to the port read from stdin once it has run its span.
  const [a, b] = values.member.split(':').map(Number) as [number, number];
  const span = await loadSpan(MODEL, [a, b], { provider: 'cpu', intraOpThreads: THREADS });
  let session: SpanSession = span.openSession({ maxPositions: 512 });
  let next: Socket | null = null;
  let spanMs = 0;
  let runs = 0;
  const server = createServer((socket) => {
    socket.setNoDelay(true);
    let queue = Promise.resolve();
    onMessages(socket, (msg) => {
      queue = queue.then(async () => {
        const rowBytes = span.manifest.architecture.hiddenSize * 4;
        if (msg.byteLength % rowBytes !== 0) {
          // A reset from the head (4 bytes), or the reports of the members before this one: this
          // member's span time per decode step joins them, its session starts afresh.
          const before = msg.byteLength === 4 ? [] : (JSON.parse(new TextDecoder().decode(msg)) as unknown[]);
          const reports = [...before, { span: values.member, spanMs: runs ? spanMs / runs : 0 }];
          session.dispose();
          session = span.openSession({ maxPositions: 512 });
          spanMs = 0;
          runs = 0;
          send(next!, new TextEncoder().encode(JSON.stringify(reports)));
          return;
        }
        const data = new Float32Array(msg.buffer, msg.byteOffset, msg.byteLength / 4);
        const t = performance.now();
        const out = await session.forward({ kind: 'hidden', data, seqLen: data.length / span.manifest.architecture.hiddenSize });
        if (data.length === span.manifest.architecture.hiddenSize) {
          spanMs += performance.now() - t;
          runs++;
        }
        if (out.kind === 'hidden') send(next!, new Uint8Array(out.data.buffer, out.data.byteOffset, out.data.byteLength));
        else send(next!, u32(tokenOf(out)));
      });
    });
  });
  server.listen(0, '127.0.0.1', () => process.stdout.write(`${(server.address() as AddressInfo).port}\n`));
  process.stdin.once('data', (d) => {
    next = connect(Number(String(d).trim()), '127.0.0.1');
    next.setNoDelay(true);
  });
  process.stdin.on('end', () => process.exit(0));
} else {
  const manifest = await loadManifest(MODEL);
  const L = manifest.architecture.numLayers;
  const layout: [number, number][] = [[0, Math.round(L / 3)], [Math.round(L / 3), Math.round((2 * L) / 3)], [Math.round((2 * L) / 3), L]];
  const TOKENS = Number(values.tokens);
  const PROMPT = Array.from({ length: 32 }, (_, i) => (i === 0 ? 1 : 100 + ((i * 7919) % 30000)));
  const children: ChildProcess[] = layout.slice(1).map((l) =>
    spawn(process.execPath, ['--import', 'tsx', import.meta.filename, '--model', MODEL, '--threads', String(THREADS), '--member', `${l[0]}:${l[1]}`], { stdio: ['pipe', 'pipe', 'inherit'] }),
  );
  try {
    const ports = await Promise.all(children.map((c) => new Promise<number>((ok, fail) => {
      c.stdout!.once('data', (d: Buffer) => ok(Number(String(d).trim())));
      c.once('exit', () => fail(new Error('a ring member exited')));
    })));
    const [head, ...inProcess] = await Promise.all(layout.map((l) => loadSpan(MODEL, l, { provider: 'cpu', intraOpThreads: THREADS })));
    const unsplit = await loadSpan(MODEL, [0, L], { provider: 'cpu', intraOpThreads: THREADS });
    let waiting: ((msg: Uint8Array) => void) | null = null;
    const back = createServer((socket) => {
      socket.setNoDelay(true);
      onMessages(socket, (msg) => {
        const w = waiting;
        waiting = null;
        w?.(msg);
      });
    });
    await new Promise<void>((ok) => back.listen(0, '127.0.0.1', ok));
    children[0]!.stdin!.write(`${ports[1]}\n`);
    children[1]!.stdin!.write(`${(back.address() as AddressInfo).port}\n`);
    const first = connect(ports[0]!, '127.0.0.1');
    first.setNoDelay(true);
    await new Promise((ok) => first.once('connect', ok));
    const ask = (bytes: Uint8Array) =>
      new Promise<Uint8Array>((ok) => {
        waiting = ok;
        send(first, bytes);
      });

    const tps = (times: number[]) => (times.length - 1) / ((times[times.length - 1]! - times[0]!) / 1000);
    /** Decode tokens/s (after the prefill) and the tokens of `generate` over in-process stages. */
    const inProcessRun = async (spans: LoadedSpan[]) => {
      const perSpan = spans.map(() => 0);
      // Each span's decode steps timed as the ring members time theirs.
      const stages: SpanSession[] = spans.map((sp, k) => {
        const session = sp.openSession({ maxPositions: 512 });
        return {
          get length() { return session.length; },
          get kvBytes() { return session.kvBytes; },
          async forward(input, options) {
            const t = performance.now();
            const out = await session.forward(input, options);
            if ((input.kind === 'tokens' ? input.ids.length : input.seqLen) === 1) perSpan[k]! += performance.now() - t;
            return out;
          },
          dispose: () => session.dispose(),
        };
      });
      const times: number[] = [];
      try {
        const { tokens } = await generate({ stages, promptIds: PROMPT, sampling: GREEDY, maxTokens: TOKENS, onToken: () => void times.push(performance.now()) });
        return { tps: tps(times), tokens, perSpan: perSpan.map((ms) => ms / (TOKENS - 1)) };
      } finally {
        for (const s of stages) s.dispose();
      }
    };
    const runUnsplit = () => inProcessRun([unsplit]);
    const runInProcess = () => inProcessRun([head!, ...inProcess]);
    /** The same loop round the ring: the head span here, the token back from the last member. */
    const decode = async (step: (ids: Int32Array) => Promise<number>) => {
      let ids = Int32Array.from(PROMPT);
      const times: number[] = [];
      const tokens: number[] = [];
      for (let i = 0; i < TOKENS; i++) {
        const token = await step(ids);
        tokens.push(token);
        times.push(performance.now());
        ids = Int32Array.of(token);
      }
      return { tps: tps(times), tokens };
    };
    const runRing = async () => {
      await ask(u32(RESET)); // fresh sessions round the ring (and last round's span times, dropped)
      const s = head!.openSession({ maxPositions: 512 });
      let headMs = 0;
      try {
        const r = await decode(async (ids) => {
          const t = performance.now();
          const out = await s.forward({ kind: 'tokens', ids });
          if (ids.length === 1) headMs += performance.now() - t;
          if (out.kind !== 'hidden') throw new Error('the head span returned logits');
          const answer = await ask(new Uint8Array(out.data.buffer, out.data.byteOffset, out.data.byteLength));
          return new Uint32Array(answer.buffer, answer.byteOffset, 1)[0]!;
        });
        const members = JSON.parse(new TextDecoder().decode(await ask(u32(RESET)))) as { spanMs: number }[];
        const perSpan = [headMs / (TOKENS - 1), ...members.map((m) => m.spanMs)];
        return { ...r, inSpans: perSpan.reduce((a, b) => a + b, 0), perSpan };
      } finally {
        s.dispose();
      }
    };

    await runUnsplit();
    await runRing();
    const rows: { unsplit: number; inProcess: number; ring: number; ringInSpans: number; unsplitMs: number; coldMs: number[] }[] = [];
    for (let round = 0; round < Number(values.rounds); round++) {
      const u = await runUnsplit();
      const p = await runInProcess();
      const g = await runRing();
      if (p.tokens.join() !== u.tokens.join() || g.tokens.join() !== u.tokens.join()) throw new Error('a layout generated other tokens than the unsplit model');
      const coldMs = g.perSpan.map((ms, k) => ms - p.perSpan[k]!);
      rows.push({ unsplit: u.tps, inProcess: p.tps, ring: g.tps, ringInSpans: g.inSpans, unsplitMs: 1000 / u.tps, coldMs });
      const list = (xs: number[]) => xs.map((x) => x.toFixed(2)).join(' / ');
      console.log(
        `round ${round + 1}: unsplit ${u.tps.toFixed(1)} tok/s, 3 spans in process ${((100 * p.tps) / u.tps).toFixed(1)}%, ring of 3 processes ${((100 * g.tps) / u.tps).toFixed(1)}% ` +
          `(in spans ${g.inSpans.toFixed(2)} ms/token, outside ${(1000 / g.tps - g.inSpans).toFixed(2)} ms/token); ` +
          `each span's decode step in process ${list(p.perSpan)} ms, in its ring process ${list(g.perSpan)} ms`,
      );
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    console.log(JSON.stringify({
      bench: 'ring-floor',
      threads: THREADS,
      layout,
      inProcessRatio: median(rows.map((r) => r.inProcess / r.unsplit)),
      ringRatio: median(rows.map((r) => r.ring / r.unsplit)),
      ringOutsideMsPerToken: median(rows.map((r) => 1000 / r.ring - r.ringInSpans)),
      // What the spans lose by running in processes of their own, per token (all spans together).
      ringColdSpansMsPerToken: median(rows.map((r) => r.coldMs.reduce((a, b) => a + b, 0))),
    }));
    back.close();
    first.destroy();
  } finally {
    for (const c of children) {
      c.stdin?.end();
      c.kill();
    }
  }
}
