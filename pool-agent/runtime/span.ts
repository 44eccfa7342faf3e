/**
 * The onnxruntime-node adapter: a layer span [start, end) of a model directory loaded as one
 * InferenceSession (the span's block files merged in memory), with KV-cache sessions on top.
 * Spans too large for one protobuf (2 GiB) are cut into a few sessions run back to back.
 *
 * @example
 * const span = await loadSpan('.models/tiny', [0, 4], { provider: 'cpu', intraOpThreads: 2 });
 * const s = span.openSession();
 * const out = await s.forward({ kind: 'tokens', ids: Int32Array.from([1, 15043]) });
 * s.dispose(); await span.close();
 */
import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { filesForSpan, manifestHash, type Manifest, type ManifestFile } from '../../protocol/manifest.js';
import { loadManifest, ModelFileError } from '../model/build.js';
import {
  FINAL_HIDDEN,
  hiddenName,
  INPUT_IDS,
  LOGITS,
  NUM_LOGITS_TO_KEEP,
  pastKeyName,
  pastValueName,
  POSITION_IDS,
  presentKeyName,
  presentValueName,
} from '../model/llama.js';
import { probeCudaCached } from './cuda.js';
import { SpanClosedError, SpanInputError } from './errors.js';
import { OnnxMerger } from './merge.js';
import type { ExecutionProvider, ForwardOptions, LoadedSpan, OpenSessionOptions, RuntimeOptions, SpanInput, SpanOutput, SpanSession } from './types.js';

/** Largest merged model handed to one InferenceSession (protobuf messages stop at 2 GiB). */
export const MAX_SESSION_BYTES = 1_800_000_000;

export interface LoadSpanOptions extends RuntimeOptions {
  /** Merged-model size above which the span is cut into several sessions (default MAX_SESSION_BYTES). */
  maxSessionBytes?: number;
  /**
   * Let idle intra-op threads spin-wait for work (onnxruntime's default). Off by default: several
   * span sessions in one process would otherwise burn the cores the running one needs.
   */
  allowSpinning?: boolean;
  /** Skip the SHA-256 check of the span's files (only for files verified moments ago). */
  skipVerify?: boolean;
  /** Told after each file is read (and checked), and before each onnxruntime session is created. */
  onProgress?: (p: LoadProgress) => void;
}

/** How far `loadSpan` got: files read of the span's files, then the sessions being created. */
export interface LoadProgress {
  stage: 'file' | 'session';
  /** The file just read (stage 'file'). */
  file?: string;
  filesDone: number;
  files: number;
  bytesDone: number;
  bytes: number;
  /** The session about to be created, from 1, and how many (stage 'session'). */
  session?: number;
  sessions?: number;
}

function sessionOptions(provider: ExecutionProvider, options: LoadSpanOptions): ort.InferenceSession.SessionOptions {
  const spin = options.allowSpinning ? '1' : '0';
  const so: ort.InferenceSession.SessionOptions = {
    executionProviders: provider === 'cuda' ? [{ name: 'cuda', deviceId: options.deviceId ?? 0 }] : ['cpu'],
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    extra: { session: { intra_op: { allow_spinning: spin }, inter_op: { allow_spinning: spin } } },
  };
  if (options.intraOpThreads) so.intraOpNumThreads = options.intraOpThreads;
  if (options.interOpThreads) so.interOpNumThreads = options.interOpThreads;
  return so;
}

async function createSession(model: Uint8Array, options: LoadSpanOptions): Promise<{ session: ort.InferenceSession; provider: ExecutionProvider }> {
  const wanted = options.provider ?? 'auto';
  if (wanted === 'cuda') return { session: await ort.InferenceSession.create(model, sessionOptions('cuda', options)), provider: 'cuda' };
  // 'auto': CUDA once a probe (pool-agent/runtime/cuda.ts, a child process, once per device and
  // process) ran a session on it; a library that is missing, of another version or cannot load
  // never reaches this process. A span that still fails there (e.g. out of GPU memory) goes to the CPU.
  if (wanted === 'auto' && (await probeCudaCached(options.deviceId ?? 0)).usable) {
    try {
      return { session: await ort.InferenceSession.create(model, sessionOptions('cuda', options)), provider: 'cuda' };
    } catch {
      // CPU below.
    }
  }
  return { session: await ort.InferenceSession.create(model, sessionOptions('cpu', options)), provider: 'cpu' };
}

/**
 * Reads a model file whole into `into` (a scratch buffer reused from file to file, or a fresh one
 * of the manifest's size) and checks its size and SHA-256 against the manifest.
 */
async function readVerified(dir: string, f: ManifestFile, verify: boolean, into = new Uint8Array(f.bytes)): Promise<Uint8Array> {
  let file: FileHandle;
  try {
    file = await open(join(dir, f.path), 'r');
  } catch {
    throw new ModelFileError(f.path, `model file ${f.path} is missing from ${dir}`);
  }
  let size: number;
  try {
    size = (await file.stat()).size;
    if (size !== f.bytes) throw new ModelFileError(f.path, `model file ${f.path} has ${size} bytes, the manifest says ${f.bytes}`);
    if (into.byteLength < size) throw new Error(`internal: a ${into.byteLength}-byte buffer for ${f.path} (${size} bytes)`);
    let got = 0;
    while (got < size) {
      const { bytesRead } = await file.read(into, got, size - got, got);
      if (bytesRead === 0) throw new ModelFileError(f.path, `model file ${f.path} ended after ${got} of ${size} bytes`);
      got += bytesRead;
    }
  } finally {
    await file.close();
  }
  const bytes = into.subarray(0, size);
  if (verify) {
    const sha = createHash('sha256').update(bytes).digest('hex');
    if (sha !== f.sha256) throw new ModelFileError(f.path, `model file ${f.path} has SHA-256 ${sha}, the manifest says ${f.sha256}`);
  }
  return bytes;
}

/**
 * One session's model: a lone file as it is; several merged one by one through a scratch buffer
 * as large as the largest, so the files never sit in memory together beside the merged model.
 */
async function readGroup(dir: string, group: readonly ManifestFile[], verify: boolean, onRead: (f: ManifestFile) => void): Promise<Uint8Array> {
  if (group.length === 1) {
    const bytes = await readVerified(dir, group[0]!, verify);
    onRead(group[0]!);
    return bytes;
  }
  const scratch = new Uint8Array(Math.max(...group.map((f) => f.bytes)));
  const merger = new OnnxMerger(group.reduce((n, f) => n + f.bytes, 0));
  for (const f of group) {
    merger.add(await readVerified(dir, f, verify, scratch));
    onRead(f);
  }
  return merger.finish();
}

/** Cuts the span's files into runs whose total size stays under the limit (at least one file each). */
function groupFiles(files: readonly ManifestFile[], limit: number): ManifestFile[][] {
  const groups: ManifestFile[][] = [];
  let cur: ManifestFile[] = [];
  let size = 0;
  for (const f of files) {
    if (cur.length > 0 && size + f.bytes > limit) {
      groups.push(cur);
      cur = [];
      size = 0;
    }
    cur.push(f);
    size += f.bytes;
  }
  if (cur.length > 0) groups.push(cur);
  return groups;
}

interface SpanGraph {
  sessions: ort.InferenceSession[];
  manifest: Manifest;
  start: number;
  end: number;
  first: boolean;
  last: boolean;
  float16: boolean;
  /** KV-cache layout 'append' (protocol/manifest.ts); else 'full'. */
  append: boolean;
  /** 'append': the past fed before anything is cached, one zero row per kv head (read only). */
  zeroRow: Float32Array | Uint16Array;
}

/**
 * Loads layers [start, end) of the model in `modelDir`: checks each needed file against the
 * manifest's SHA-256, merges them and opens the onnxruntime session(s).
 */
export async function loadSpan(modelDir: string, layers: readonly [number, number], options: LoadSpanOptions = {}): Promise<LoadedSpan> {
  const manifest = await loadManifest(modelDir);
  const modelId = await manifestHash(manifest);
  const [start, end] = layers;
  const files = filesForSpan(manifest, { start, end });
  const groups = groupFiles(files, options.maxSessionBytes ?? MAX_SESSION_BYTES);
  const sessions: ort.InferenceSession[] = [];
  let provider: ExecutionProvider = 'cpu';
  const done = { filesDone: 0, files: files.length, bytesDone: 0, bytes: files.reduce((n, f) => n + f.bytes, 0) };
  const onRead = (f: ManifestFile) => {
    done.filesDone++;
    done.bytesDone += f.bytes;
    options.onProgress?.({ stage: 'file', file: f.path, ...done });
  };
  try {
    for (const [i, group] of groups.entries()) {
      const model = await readGroup(modelDir, group, !options.skipVerify, onRead);
      options.onProgress?.({ stage: 'session', session: i + 1, sessions: groups.length, ...done });
      const created = await createSession(model, sessions.length === 0 ? options : { ...options, provider });
      sessions.push(created.session);
      provider = created.provider;
    }
  } catch (err) {
    await Promise.all(sessions.map((s) => s.release()));
    throw err;
  }
  const arch = manifest.architecture;
  const float16 = manifest.dtype === 'float16';
  const graph: SpanGraph = {
    sessions,
    manifest,
    start,
    end,
    first: start === 0,
    last: end === arch.numLayers,
    float16,
    append: manifest.kvCache === 'append',
    zeroRow: float16 ? new Uint16Array(arch.numKeyValueHeads * arch.headDim) : new Float32Array(arch.numKeyValueHeads * arch.headDim),
  };
  const kvBytesPerToken = (end - start) * 2 * arch.numKeyValueHeads * arch.headDim * (float16 ? 2 : 4);
  let closed = false;
  const open = new Set<OrtSpanSession>();
  return {
    modelId,
    manifest,
    layers: [start, end] as const,
    first: graph.first,
    last: graph.last,
    provider,
    kvBytesPerToken,
    openSession(options: OpenSessionOptions = {}): SpanSession {
      if (closed) throw new SpanClosedError('span is closed');
      const s = new OrtSpanSession(graph, kvBytesPerToken, Math.min(options.maxPositions ?? arch.maxPositionEmbeddings, arch.maxPositionEmbeddings), () => open.delete(s));
      open.add(s);
      return s;
    },
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      const live = [...open];
      for (const s of live) s.dispose();
      // Never free a native session under a run that is still in flight.
      await Promise.all(live.map((s) => s.drain()));
      await Promise.all(sessions.map((s) => s.release()));
    },
  };
}

type KvTensor = ort.Tensor;
type KvBuffer = Float32Array | Uint16Array;

/** 'append' cache buffers grow in blocks of this many positions (masked rows cost little). */
export const KV_BLOCK_POSITIONS = 64;

class OrtSpanSession implements SpanSession {
  private pos = 0;
  private disposed = false;
  /** 'full' layout: the last run's present outputs, fed back as the next past. */
  private keys: KvTensor[];
  private values: KvTensor[];
  /** 'append' layout: per layer [kvHeads, capacity, headDim] buffers; rows >= pos are zeros. */
  private keyBufs: KvBuffer[] = [];
  private valueBufs: KvBuffer[] = [];
  private capacity = 0;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly g: SpanGraph,
    private readonly bytesPerToken: number,
    private readonly maxPositions: number,
    private readonly onDispose: () => void,
  ) {
    const a = g.manifest.architecture;
    const n = g.end - g.start;
    const empty = (): KvTensor =>
      g.float16
        ? new ort.Tensor('float16', new Uint16Array(0), [1, a.numKeyValueHeads, 0, a.headDim])
        : new ort.Tensor('float32', new Float32Array(0), [1, a.numKeyValueHeads, 0, a.headDim]);
    this.keys = g.append ? [] : Array.from({ length: n }, empty);
    this.values = g.append ? [] : Array.from({ length: n }, empty);
  }

  get length(): number {
    return this.pos;
  }

  /** Bytes held: the cached positions ('full'), the buffers' capacity ('append'). */
  get kvBytes(): number {
    return (this.g.append ? this.capacity : this.pos) * this.bytesPerToken;
  }

  /**
   * 'append': makes the buffers hold at least `need` positions (whole blocks, at most the
   * session's maxPositions), keeping the cached rows.
   */
  private reserve(need: number): void {
    if (need <= this.capacity) return;
    const a = this.g.manifest.architecture;
    const cap = Math.max(need, Math.min(Math.ceil(need / KV_BLOCK_POSITIONS) * KV_BLOCK_POSITIONS, this.maxPositions));
    const row = a.headDim;
    const grow = (old: KvBuffer | undefined): KvBuffer => {
      const buf = this.g.float16 ? new Uint16Array(a.numKeyValueHeads * cap * row) : new Float32Array(a.numKeyValueHeads * cap * row);
      if (old && this.pos > 0) {
        for (let h = 0; h < a.numKeyValueHeads; h++) {
          buf.set(old.subarray(h * this.capacity * row, (h * this.capacity + this.pos) * row), h * cap * row);
        }
      }
      return buf;
    };
    const n = this.g.end - this.g.start;
    this.keyBufs = Array.from({ length: n }, (_, i) => grow(this.keyBufs[i]));
    this.valueBufs = Array.from({ length: n }, (_, i) => grow(this.valueBufs[i]));
    this.capacity = cap;
  }

  /** 'append': writes a run's new rows [1, kvHeads, T, headDim] at positions pos..pos+T-1. */
  private appendRows(buf: KvBuffer, out: ort.Tensor, seqLen: number): void {
    const a = this.g.manifest.architecture;
    if (out.dims.length !== 4 || out.dims[2] !== seqLen) throw new Error(`internal: a KV output of [${out.dims.join(', ')}] for ${seqLen} new positions`);
    const rows = out.data as KvBuffer;
    const row = a.headDim;
    for (let h = 0; h < a.numKeyValueHeads; h++) {
      buf.set(rows.subarray(h * seqLen * row, (h + 1) * seqLen * row), (h * this.capacity + this.pos) * row);
    }
  }

  forward(input: SpanInput, options: ForwardOptions = {}): Promise<SpanOutput> {
    // One forward at a time: each call extends the KV cache the next one reads.
    const run = this.queue.then(() => this.run(input, options));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private feeds(input: SpanInput, options: ForwardOptions): { feeds: Record<string, ort.Tensor>; seqLen: number; keep: number } {
    if (this.disposed) throw new SpanClosedError();
    const g = this.g;
    const a = g.manifest.architecture;
    const feeds: Record<string, ort.Tensor> = {};
    let seqLen: number;
    if (g.first) {
      if (input.kind !== 'tokens') throw new SpanInputError(`span [${g.start}, ${g.end}) starts at layer 0 and takes token ids, got ${input.kind}`);
      if (!(input.ids instanceof Int32Array)) throw new SpanInputError('token ids must be an Int32Array');
      seqLen = input.ids.length;
      const ids = new BigInt64Array(seqLen);
      for (let i = 0; i < seqLen; i++) {
        const id = input.ids[i]!;
        if (id < 0 || id >= a.vocabSize) throw new SpanInputError(`token id ${id} at position ${i} is outside the vocabulary [0, ${a.vocabSize})`);
        ids[i] = BigInt(id);
      }
      if (seqLen > 0) feeds[INPUT_IDS] = new ort.Tensor('int64', ids, [1, seqLen]);
    } else {
      if (input.kind !== 'hidden') throw new SpanInputError(`span [${g.start}, ${g.end}) takes hidden states from layer ${g.start}, got ${input.kind}`);
      seqLen = input.seqLen;
      if (!Number.isInteger(seqLen) || seqLen < 1) throw new SpanInputError(`seqLen must be a positive integer, got ${seqLen}`);
      const wantF16 = g.float16;
      if (wantF16 && !(input.data instanceof Uint16Array)) {
        throw new SpanInputError(`model dtype float16 expects hidden states as Uint16Array (float16 bits), got ${input.data.constructor.name}`);
      }
      if (!wantF16 && !(input.data instanceof Float32Array)) {
        throw new SpanInputError(`model dtype float32 expects hidden states as Float32Array, got ${input.data.constructor.name}`);
      }
      if (input.data.length !== seqLen * a.hiddenSize) {
        throw new SpanInputError(
          `hidden states have ${input.data.length} values, expected seqLen ${seqLen} x hidden size ${a.hiddenSize} = ${seqLen * a.hiddenSize}`,
        );
      }
      feeds[hiddenName(g.start)] = wantF16
        ? new ort.Tensor('float16', input.data as Uint16Array, [1, seqLen, a.hiddenSize])
        : new ort.Tensor('float32', input.data as Float32Array, [1, seqLen, a.hiddenSize]);
    }
    if (seqLen < 1) throw new SpanInputError('forward needs at least one position');
    if (this.pos + seqLen > a.maxPositionEmbeddings) {
      throw new SpanInputError(
        `positions ${this.pos}..${this.pos + seqLen - 1} exceed the model's maxPositionEmbeddings ${a.maxPositionEmbeddings}`,
      );
    }
    const positions = new BigInt64Array(seqLen);
    for (let i = 0; i < seqLen; i++) positions[i] = BigInt(this.pos + i);
    feeds[POSITION_IDS] = new ort.Tensor('int64', positions, [1, seqLen]);
    if (g.append) {
      this.reserve(this.pos + seqLen);
      const type = g.float16 ? 'float16' : 'float32';
      // Nothing cached yet: one masked zero row instead of the whole buffer, so a prefill does
      // not spend attention on empty rows.
      const first = this.pos === 0;
      const dims = [1, a.numKeyValueHeads, first ? 1 : this.capacity, a.headDim];
      for (let l = g.start; l < g.end; l++) {
        feeds[pastKeyName(l)] = new ort.Tensor(type, first ? g.zeroRow : this.keyBufs[l - g.start]!, dims);
        feeds[pastValueName(l)] = new ort.Tensor(type, first ? g.zeroRow : this.valueBufs[l - g.start]!, dims);
      }
    } else {
      for (let l = g.start; l < g.end; l++) {
        feeds[pastKeyName(l)] = this.keys[l - g.start]!;
        feeds[pastValueName(l)] = this.values[l - g.start]!;
      }
    }
    let keep = 1;
    if (g.last) {
      keep = options.logitsToKeep ?? 1;
      if (!Number.isInteger(keep) || keep < 1 || keep > seqLen) throw new SpanInputError(`logitsToKeep must be an integer in [1, ${seqLen}], got ${keep}`);
      feeds[NUM_LOGITS_TO_KEEP] = new ort.Tensor('int64', BigInt64Array.of(BigInt(keep)), []);
    }
    return { feeds, seqLen, keep };
  }

  private async run(input: SpanInput, options: ForwardOptions): Promise<SpanOutput> {
    const { feeds, seqLen, keep } = this.feeds(input, options);
    const g = this.g;
    const results: Record<string, ort.Tensor> = {};
    for (const session of g.sessions) {
      const own: Record<string, ort.Tensor> = {};
      for (const name of session.inputNames) {
        const t = feeds[name] ?? results[name];
        if (!t) throw new Error(`internal: no value for span input ${name}`);
        own[name] = t;
      }
      const out = await session.run(own);
      Object.assign(results, out);
    }
    if (this.disposed) throw new SpanClosedError();
    // Commit the cache only after every session succeeded, so a failed call leaves it intact.
    for (let l = g.start; l < g.end; l++) {
      const k = results[presentKeyName(l)]!;
      const v = results[presentValueName(l)]!;
      if (g.append) {
        this.appendRows(this.keyBufs[l - g.start]!, k, seqLen);
        this.appendRows(this.valueBufs[l - g.start]!, v, seqLen);
      } else {
        this.keys[l - g.start] = k;
        this.values[l - g.start] = v;
      }
    }
    this.pos += seqLen;
    const hiddenSize = g.manifest.architecture.hiddenSize;
    if (!g.last) {
      const h = results[hiddenName(g.end)]!;
      return { kind: 'hidden', data: h.data as Float32Array | Uint16Array, seqLen };
    }
    const logits = results[LOGITS]!.data as Float32Array;
    const finalHidden = results[FINAL_HIDDEN]!.data as Float32Array;
    if (finalHidden.length !== seqLen * hiddenSize) throw new Error('internal: final hidden size mismatch');
    return { kind: 'logits', logits, logitsKept: keep, finalHidden, seqLen };
  }

  /** Resolves once no forward of this session is running. */
  drain(): Promise<void> {
    return this.queue.then(() => undefined);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const t of [...this.keys, ...this.values]) t.dispose?.();
    this.keys = [];
    this.values = [];
    this.keyBufs = [];
    this.valueBufs = [];
    this.capacity = 0;
    this.onDispose();
  }
}
