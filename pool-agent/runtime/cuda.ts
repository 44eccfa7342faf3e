/**
 * Whether onnxruntime-node's CUDA execution provider can really run here, and why not.
 *
 * onnxruntime-node 1.30 bundles the CPU provider only; the CUDA provider is two more libraries
 * (`libonnxruntime_providers_shared.so`, `libonnxruntime_providers_cuda.so`) that its install
 * script downloads next to the binding (README "GPU hosts"; scripts/cuda-provider.ts installs
 * them). Present is not usable: they need the NVIDIA driver, a device, the CUDA 12 runtime
 * libraries and cuDNN 9, and they must be built for this exact onnxruntime version (the provider
 * bridge is not a stable ABI: another version can crash the process). So the probe checks the
 * files, the version string they carry, then creates a session with the CUDA provider on a tiny
 * graph and runs it, in a child process with a time limit, so a hang or a crash costs nothing.
 *
 * @example
 * const cuda = await probeCuda();
 * if (!cuda.usable) console.log(`CUDA: ${cuda.reason}: ${cuda.detail}`);
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { z } from 'zod';

/** The provider libraries, in load order (the shared bridge first). */
export const CUDA_PROVIDER_LIBS = ['libonnxruntime_providers_shared.so', 'libonnxruntime_providers_cuda.so'] as const;

/** Why CUDA cannot be used, most basic first. */
export const CUDA_UNUSABLE_REASONS = [
  'unsupported_platform',
  'library_missing',
  'version_mismatch',
  'driver_missing',
  'no_device',
  'load_error',
  'timeout',
  'crashed',
] as const;
export type CudaUnusableReason = (typeof CUDA_UNUSABLE_REASONS)[number];

export type ProviderStatus =
  | { name: 'cpu' | 'cuda'; usable: true; detail: string; deviceId?: number }
  | { name: 'cpu' | 'cuda'; usable: false; reason: CudaUnusableReason; detail: string; deviceId?: number };

export interface OrtPackage {
  /** The onnxruntime-node package folder. */
  dir: string;
  version: string;
  /** Where the binding and its libraries live (and the provider libraries must go). */
  binDir: string;
  /** The entry a child process requires. */
  entry: string;
}

const packageJsonSchema = z.object({ name: z.literal('onnxruntime-node'), version: z.string().regex(/^\d+\.\d+\.\d+/), main: z.string().min(1) });

/** The onnxruntime-node package this process uses (or the one in `dir`). */
export function ortPackage(dir?: string): OrtPackage {
  const pkgDir = dir ?? dirname(createRequire(import.meta.url).resolve('onnxruntime-node/package.json'));
  const pkg = packageJsonSchema.parse(JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')));
  return {
    dir: pkgDir,
    version: pkg.version,
    binDir: join(pkgDir, 'bin', 'napi-v6', process.platform, process.arch),
    entry: join(pkgDir, pkg.main),
  };
}

/**
 * The onnxruntime versions a library names (NUL-delimited "1.x.y" strings; onnxruntime's
 * libraries carry their own version once). Read in chunks: the CUDA provider is ~230 MB.
 */
export async function libraryOrtVersions(path: string): Promise<string[]> {
  const found = new Set<string>();
  const file = await open(path, 'r');
  try {
    const chunk = Buffer.alloc(16 * 1024 * 1024);
    const overlap = 16;
    let position = 0;
    let carry = Buffer.alloc(0);
    for (;;) {
      const { bytesRead } = await file.read(chunk, 0, chunk.length, position);
      if (bytesRead === 0) break;
      position += bytesRead;
      const text = Buffer.concat([carry, chunk.subarray(0, bytesRead)]).toString('latin1');
      for (const m of text.matchAll(/\x00(1\.\d{1,3}\.\d{1,3})\x00/g)) found.add(m[1]!);
      carry = Buffer.from(text.slice(-overlap), 'latin1');
    }
  } finally {
    await file.close();
  }
  return [...found].sort();
}

/**
 * A tiny ONNX model (opset 17): y = x · diag(1, 2, 3, 4), x float [1, 4]. MatMul runs through
 * cuBLAS on the CUDA provider, so the probe loads what a real span needs. Encoded once with
 * pool-agent/model/onnx-graph.ts (test/unit/cuda-probe.test.ts runs it on the CPU).
 */
export const PROBE_MODEL_BASE64 =
  'CAgSFmxheWVybmV0LW1vZGVsLWJ1aWxkZXIaATE61QEKHwoBeAoBdxILbW1fb3V0cHV0XzAaAm1tIgZNYXRNdWwKJgoLbW1fb3V0cHV0XzASAXkaCnkvSWRlbnRpdHkiCElkZW50aXR5EhNsYXllcm5ldC1jdWRhLXByb2JlKksIBAgEEAFCAXdKQAAAgD8AAAAAAAAAAAAAAAAAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAAAAAEBAAAAAAAAAAAAAAAAAAAAAAAAAgEBaEwoBeBIOCgwIARIICgIIAQoCCARiEwoBeRIOCgwIARIICgIIAQoCCARCBAoAEBE=';
export const PROBE_EXPECTED = [1, 2, 3, 4];

/** The child: creates the session on `provider`, runs it once, prints one JSON line. Plain CommonJS (no loader needed). */
const CHILD = `
const [entry, provider, deviceId, model] = process.argv.slice(1);
const say = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
(async () => {
  try {
    const ort = require(entry);
    const eps = provider === 'cuda' ? [{ name: 'cuda', deviceId: Number(deviceId) }] : ['cpu'];
    const s = await ort.InferenceSession.create(new Uint8Array(Buffer.from(model, 'base64')), { executionProviders: eps, logSeverityLevel: 2 });
    const out = await s.run({ x: new ort.Tensor('float32', Float32Array.of(1, 1, 1, 1), [1, 4]) });
    say({ ok: true, y: Array.from(out.y.data) });
  } catch (e) {
    say({ ok: false, message: String((e && e.message) || e) });
  }
})();
`;

const childAnswerSchema = z.union([z.object({ ok: z.literal(true), y: z.array(z.number()).max(16) }), z.object({ ok: z.literal(false), message: z.string().max(4096) })]);

export interface ChildRun {
  answer?: z.infer<typeof childAnswerSchema>;
  stderr: string;
  code: number | null;
  signal: string | null;
  timedOut: boolean;
}

/** Runs the probe graph on `provider` in a child node process (killed after `timeoutMs`). */
export function runProbeChild(pkg: OrtPackage, provider: 'cpu' | 'cuda', deviceId: number, timeoutMs: number, env: NodeJS.ProcessEnv = process.env): Promise<ChildRun> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['-e', CHILD, pkg.entry, provider, String(deviceId), PROBE_MODEL_BASE64], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout = (stdout + d).slice(-8192)));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-16384)));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const line = stdout.trim().split('\n').pop() ?? '';
      let answer: ChildRun['answer'];
      try {
        const parsed = childAnswerSchema.safeParse(JSON.parse(line));
        if (parsed.success) answer = parsed.data;
      } catch {
        // No answer: the child crashed or was killed; code/signal say which.
      }
      resolve({ answer, stderr, code, signal, timedOut });
    });
  });
}

// onnxruntime's log lines are colored (ESC[..m); the cause follows "with error:".
const clean = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, '').trim();

/** Names why a CUDA session could not be created or run, from the child's error and onnxruntime's log. */
export function classifyCudaFailure(message: string, stderr: string): { reason: CudaUnusableReason; detail: string } {
  const log = clean(stderr);
  const cause = /with error: (.+)$/m.exec(log)?.[1]?.trim();
  const all = `${message}\n${log}`;
  const first = (cause ?? clean(message)).split('\n')[0]!.slice(0, 400);
  if (/libcuda\.so\.1/.test(cause ?? all)) {
    return { reason: 'driver_missing', detail: `the NVIDIA driver library is not installed (${first})` };
  }
  if (/no CUDA-capable device|cudaErrorNoDevice|CUDA failure 100\b|CUDA driver version is insufficient|cudaErrorInsufficientDriver|CUDA failure 35\b|invalid device ordinal|cudaErrorInvalidDevice/i.test(all)) {
    const line = /(no CUDA-capable device[^\n]*|CUDA driver version is insufficient[^\n]*|invalid device ordinal[^\n]*|CUDA failure \d+[^\n]*)/i.exec(all)?.[1] ?? first;
    return { reason: 'no_device', detail: `no usable CUDA device: ${line.slice(0, 400)}` };
  }
  if (cause && /cannot open shared object file/.test(cause)) {
    return { reason: 'load_error', detail: `a library the CUDA provider needs is not on the library path: ${first} (it needs the CUDA 12 runtime and cuDNN 9; see README "GPU hosts")` };
  }
  return { reason: 'load_error', detail: `the CUDA provider did not load: ${first}` };
}

export interface ProbeOptions {
  /** The onnxruntime-node package folder (default: the one this process uses). */
  ortDir?: string;
  deviceId?: number;
  /** Longest the child may take to create the session and run it (default 30 s: CUDA's first context takes seconds). */
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
}

/** Whether a session on CUDA device `deviceId` can be created and run here; the reason when not. */
export async function probeCuda(options: ProbeOptions = {}): Promise<ProviderStatus> {
  const deviceId = options.deviceId ?? 0;
  const no = (reason: CudaUnusableReason, detail: string): ProviderStatus => ({ name: 'cuda', usable: false, reason, detail, deviceId });
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    return no('unsupported_platform', `onnxruntime-node ships its CUDA provider for linux-x64 only (this is ${process.platform}-${process.arch})`);
  }
  let pkg: OrtPackage;
  try {
    pkg = ortPackage(options.ortDir);
  } catch (err) {
    return no('load_error', `cannot read onnxruntime-node's package.json: ${(err as Error).message}`);
  }
  const missing = CUDA_PROVIDER_LIBS.filter((f) => !existsSync(join(pkg.binDir, f)));
  if (missing.length) {
    return no('library_missing', `${missing.join(' and ')} not in ${pkg.binDir}: onnxruntime-node's install skipped them (install them: README "GPU hosts", node --import tsx scripts/cuda-provider.ts install)`);
  }
  const versions = await libraryOrtVersions(join(pkg.binDir, 'libonnxruntime_providers_cuda.so'));
  if (versions.length > 0 && !versions.includes(pkg.version)) {
    return no('version_mismatch', `libonnxruntime_providers_cuda.so is onnxruntime ${versions.join('/')}, onnxruntime-node is ${pkg.version}: install the provider of ${pkg.version}`);
  }
  const run = await runProbeChild(pkg, 'cuda', deviceId, options.timeoutMs ?? 30_000, options.env);
  if (run.timedOut) return no('timeout', `creating a CUDA session did not finish in ${options.timeoutMs ?? 30_000} ms`);
  if (!run.answer) {
    return no('crashed', `the probe process died (${run.signal ?? `exit ${run.code}`}) creating a CUDA session: ${clean(run.stderr).split('\n').pop()?.slice(0, 300) ?? ''}`);
  }
  if (!run.answer.ok) return { ...no('load_error', ''), ...classifyCudaFailure(run.answer.message, run.stderr) };
  if (run.answer.y.join(',') !== PROBE_EXPECTED.join(',')) return no('load_error', `the CUDA session computed [${run.answer.y.join(', ')}], expected [${PROBE_EXPECTED.join(', ')}]`);
  const version = versions.length ? `onnxruntime ${pkg.version}` : `onnxruntime-node ${pkg.version} (the library names no version)`;
  return { name: 'cuda', usable: true, deviceId, detail: `a session on cuda:${deviceId} ran (${version})` };
}

const cached = new Map<number, Promise<ProviderStatus>>();

/** probeCuda for the onnxruntime-node this process uses, once per device and process. */
export function probeCudaCached(deviceId = 0): Promise<ProviderStatus> {
  let p = cached.get(deviceId);
  if (!p) cached.set(deviceId, (p = probeCuda({ deviceId })));
  return p;
}

/**
 * The execution providers of this host: the CPU always, then CUDA with its probe's answer for
 * each of `devices` CUDA devices (nvidia-smi's count; one entry when the answer cannot depend on
 * the device: no library, another version, no driver).
 */
export async function listProviders(options: Omit<ProbeOptions, 'deviceId'> = {}, devices = 1): Promise<ProviderStatus[]> {
  const cpu: ProviderStatus = { name: 'cpu', usable: true, detail: 'bundled with onnxruntime-node' };
  const first = await probeCuda({ ...options, deviceId: 0 });
  const hostWide = !first.usable && ['unsupported_platform', 'library_missing', 'version_mismatch', 'driver_missing'].includes(first.reason);
  if (hostWide || devices <= 1) return [cpu, first];
  const rest = await Promise.all(Array.from({ length: Math.min(devices, 64) - 1 }, (_, i) => probeCuda({ ...options, deviceId: i + 1 })));
  return [cpu, first, ...rest];
}

export function describeProviders(list: readonly ProviderStatus[]): string {
  return list
    .map((p) => `EP   ${(p.name === 'cuda' && p.deviceId ? `cuda:${p.deviceId}` : p.name).padEnd(6)} ${p.usable ? `usable: ${p.detail}` : `not usable (${p.reason}): ${p.detail}`}`)
    .join('\n');
}
