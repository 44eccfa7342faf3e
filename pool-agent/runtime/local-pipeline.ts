/**
 * One agent span over several local devices: the span's layers are cut into contiguous parts,
 * one onnxruntime session per device, and run as a local pipeline behind the LoadedSpan
 * interface, so the server, the attestations and the network see a single span. A step runs the
 * parts in order; different jobs' steps overlap across devices (each part queues its own
 * sessions only).
 *
 * @example
 * const span = await loadDeviceSpan('.models/1b', [0, 16], parseDevices('cuda:0,cuda:1'), { intraOpThreads: 4 });
 * const s = span.openSession({ maxPositions: 512 });
 */
import type { Manifest } from '../../protocol/manifest.js';
import { SpanClosedError } from './errors.js';
import { loadSpan, type LoadSpanOptions } from './span.js';
import type { ExecutionProvider, ForwardOptions, LoadedSpan, OpenSessionOptions, SpanInput, SpanOutput, SpanSession } from './types.js';

/** A local device a part of the span runs on. */
export interface DeviceSpec {
  provider: ExecutionProvider;
  /** CUDA device index (0 for the CPU). */
  deviceId: number;
}

/** Parses `cpu`, `cuda` (= cuda:0) or `cuda:N`, comma-separated; throws a RangeError on anything else. */
export function parseDevices(text: string): DeviceSpec[] {
  const items = text.split(',').map((s) => s.trim());
  if (items.length === 0 || items.length > 64 || items.some((s) => s === '')) throw new RangeError(`devices must be a comma-separated list like cuda:0,cuda:1 or cpu, got ${JSON.stringify(text)}`);
  return items.map((item) => {
    if (item === 'cpu') return { provider: 'cpu', deviceId: 0 };
    const m = /^cuda(?::(\d{1,3}))?$/.exec(item);
    if (!m) throw new RangeError(`unknown device ${JSON.stringify(item)} (expected cpu, cuda or cuda:N)`);
    return { provider: 'cuda', deviceId: Number(m[1] ?? 0) };
  });
}

/** Cuts [start, end) into `parts` contiguous ranges whose lengths differ by at most one. */
export function splitLayers(layers: readonly [number, number], parts: number): [number, number][] {
  const [start, end] = layers;
  const n = end - start;
  if (!Number.isInteger(parts) || parts < 1 || parts > n) throw new RangeError(`cannot cut ${n} layers [${start}, ${end}) over ${parts} devices (at least one layer each)`);
  return Array.from({ length: parts }, (_, i) => [start + Math.round((i * n) / parts), start + Math.round(((i + 1) * n) / parts)]);
}

/**
 * Loads `layers` over `devices`: one device is a plain span; several cut the layers evenly, in
 * device order. Every part must load on the provider it names (no silent CPU fallback for a
 * listed CUDA device).
 */
export async function loadDeviceSpan(modelDir: string, layers: readonly [number, number], devices: readonly DeviceSpec[], options: Omit<LoadSpanOptions, 'provider' | 'deviceId'> = {}): Promise<LoadedSpan> {
  if (devices.length === 0) throw new RangeError('at least one device');
  const ranges = splitLayers(layers, devices.length);
  const parts: LoadedSpan[] = [];
  try {
    for (const [i, range] of ranges.entries()) {
      const d = devices[i]!;
      parts.push(await loadSpan(modelDir, range, { ...options, provider: d.provider, deviceId: d.deviceId }));
    }
  } catch (err) {
    await Promise.all(parts.map((p) => p.close()));
    throw err;
  }
  return parts.length === 1 ? parts[0]! : pipelineSpan(parts);
}

/** Several loaded spans covering consecutive layers, as one span. */
export function pipelineSpan(parts: readonly LoadedSpan[]): LoadedSpan {
  const first = parts[0]!;
  const last = parts[parts.length - 1]!;
  for (let i = 1; i < parts.length; i++) {
    if (parts[i]!.modelId !== first.modelId) throw new RangeError('pipeline parts must come from one model');
    if (parts[i]!.layers[0] !== parts[i - 1]!.layers[1]) throw new RangeError(`pipeline parts must be consecutive: [${parts[i - 1]!.layers.join(', ')}) then [${parts[i]!.layers.join(', ')})`);
  }
  const manifest: Manifest = first.manifest;
  return {
    modelId: first.modelId,
    manifest,
    layers: [first.layers[0], last.layers[1]] as const,
    first: first.first,
    last: last.last,
    provider: first.provider,
    kvBytesPerToken: parts.reduce((sum, p) => sum + p.kvBytesPerToken, 0),
    openSession(options?: OpenSessionOptions): SpanSession {
      const sessions: SpanSession[] = [];
      try {
        for (const p of parts) sessions.push(p.openSession(options));
      } catch (err) {
        for (const s of sessions) s.dispose();
        throw err;
      }
      return new PipelineSession(sessions);
    },
    async close(): Promise<void> {
      await Promise.all(parts.map((p) => p.close()));
    },
  };
}

class PipelineSession implements SpanSession {
  private queue: Promise<unknown> = Promise.resolve();
  /** Set when a step failed after an earlier part had already cached it. */
  private broken = false;

  constructor(private readonly parts: readonly SpanSession[]) {}

  get length(): number {
    return this.parts[0]!.length;
  }

  get kvBytes(): number {
    return this.parts.reduce((sum, s) => sum + s.kvBytes, 0);
  }

  forward(input: SpanInput, options: ForwardOptions = {}): Promise<SpanOutput> {
    // One step at a time through every part, so parts never disagree on the cached length.
    const run = this.queue.then(async () => {
      if (this.broken) throw new SpanClosedError('an earlier step failed part-way through this local pipeline: its parts hold different positions');
      let next: SpanInput = input;
      let out!: SpanOutput;
      for (const [i, s] of this.parts.entries()) {
        try {
          out = await s.forward(next, i === this.parts.length - 1 ? options : {});
        } catch (err) {
          if (i > 0) this.broken = true;
          throw err;
        }
        if (i < this.parts.length - 1) {
          if (out.kind !== 'hidden') throw new Error('internal: a pipeline part before the last returned logits');
          next = { kind: 'hidden', data: out.data, seqLen: out.seqLen };
        }
      }
      return out;
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  dispose(): void {
    for (const s of this.parts) s.dispose();
  }
}

/**
 * The agent's span as its settings describe it: cut over `devices` when given, else one span on
 * `provider` ('auto' tries CUDA, then the CPU).
 */
export async function loadAgentSpan(
  modelDir: string,
  layers: readonly [number, number],
  settings: { provider: 'auto' | ExecutionProvider; devices?: readonly string[] | undefined; threads?: number | undefined },
  onProgress?: LoadSpanOptions['onProgress'],
): Promise<LoadedSpan> {
  const options = { ...(settings.threads ? { intraOpThreads: settings.threads } : {}), ...(onProgress ? { onProgress } : {}) };
  if (!settings.devices || settings.devices.length === 0) return loadSpan(modelDir, layers, { provider: settings.provider, ...options });
  return loadDeviceSpan(modelDir, layers, parseDevices(settings.devices.join(',')), options);
}
