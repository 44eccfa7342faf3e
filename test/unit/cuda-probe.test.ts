/**
 * CUDA on a CPU host: the probe says why CUDA is not usable (library missing, another
 * onnxruntime version, a library that does not load), the installer refuses a provider of another
 * version and records what it placed, `pool-agent hardware` lists the providers, and `serve`'s
 * provider choice refuses `cuda` with the reason and falls back to the CPU on `auto`.
 *
 * The probe runs against copies of onnxruntime-node in a temp folder (binding and core library
 * copied, fake provider libraries beside them), so the real package is never touched.
 */
import { existsSync } from 'node:fs';
import { copyFile, cp, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runHardware } from '../../pool-agent/cli/hardware.js';
import { saveState } from '../../pool-agent/config.js';
import { main } from '../../pool-agent/main.js';
import { buildModel } from '../../pool-agent/model/build.js';
import { resolveProvider } from '../../pool-agent/cli/provider.js';
import { CliError } from '../../pool-agent/cli/args.js';
import {
  classifyCudaFailure,
  CUDA_PROVIDER_LIBS,
  CUDA_UNUSABLE_REASONS,
  libraryOrtVersions,
  ortPackage,
  PROBE_EXPECTED,
  probeCuda,
  runProbeChild,
  type ProviderStatus,
} from '../../pool-agent/runtime/cuda.js';
import { installProvider, MARKER_FILE, markerSchema, parseSource, sha256File } from '../../scripts/cuda-install.js';

const real = ortPackage();
const linuxX64 = process.platform === 'linux' && process.arch === 'x64';
let root: string;

/** A copy of onnxruntime-node (binding and core library, not the other platforms') under root/NAME/node_modules. */
async function ortCopy(name: string): Promise<string> {
  const modules = join(root, name, 'node_modules');
  const dir = join(modules, 'onnxruntime-node');
  await mkdir(join(dir, 'bin', 'napi-v6', process.platform, process.arch), { recursive: true });
  await copyFile(join(real.dir, 'package.json'), join(dir, 'package.json'));
  await cp(join(real.dir, 'dist'), join(dir, 'dist'), { recursive: true });
  for (const f of ['onnxruntime_binding.node', 'libonnxruntime.so.1']) {
    if (existsSync(join(real.binDir, f))) await copyFile(join(real.binDir, f), join(ortPackage(dir).binDir, f));
  }
  await symlink(dirname(ortPackage().dir) + '/onnxruntime-common', join(modules, 'onnxruntime-common'));
  return dir;
}

/** A fake library: `text` around an optional NUL-delimited version string. */
const fakeLib = (version?: string) => Buffer.concat([Buffer.from('not an ELF file\n'), version ? Buffer.from(`\0${version}\0`, 'latin1') : Buffer.alloc(0), Buffer.alloc(64)]);

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'layernet-cuda-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('the CUDA probe', () => {
  it('runs its graph in a child process (on the CPU here)', async () => {
    const run = await runProbeChild(real, 'cpu', 0, 30_000);
    expect(run.answer).toEqual({ ok: true, y: PROBE_EXPECTED });
  });

  it.runIf(linuxX64)('says the provider libraries are missing when they are (this package, unless a GPU host installed them)', async () => {
    const cuda = await probeCuda();
    expect(cuda.name).toBe('cuda');
    if (CUDA_PROVIDER_LIBS.some((l) => !existsSync(join(real.binDir, l)))) {
      expect(cuda).toMatchObject({ usable: false, reason: 'library_missing' });
      expect(cuda.detail).toContain(real.binDir);
    } else if (!cuda.usable) expect(CUDA_UNUSABLE_REASONS).toContain(cuda.reason);
  });

  it.runIf(linuxX64)('names each reason: missing, another version, a library that does not load', async () => {
    const dir = await ortCopy('probe');
    const bin = ortPackage(dir).binDir;
    const missing = await probeCuda({ ortDir: dir });
    expect(missing).toMatchObject({ usable: false, reason: 'library_missing' });
    expect(missing.detail).toMatch(/libonnxruntime_providers_shared\.so and libonnxruntime_providers_cuda\.so not in/);

    await writeFile(join(bin, 'libonnxruntime_providers_shared.so'), fakeLib());
    await writeFile(join(bin, 'libonnxruntime_providers_cuda.so'), fakeLib('1.29.0'));
    expect(await libraryOrtVersions(join(bin, 'libonnxruntime_providers_cuda.so'))).toEqual(['1.29.0']);
    const older = await probeCuda({ ortDir: dir });
    expect(older).toMatchObject({ usable: false, reason: 'version_mismatch' });
    expect(older.detail).toContain(`onnxruntime 1.29.0, onnxruntime-node is ${real.version}`);

    // Right version string, but not a library: onnxruntime's own load fails in the child.
    await writeFile(join(bin, 'libonnxruntime_providers_cuda.so'), fakeLib(real.version));
    const broken = await probeCuda({ ortDir: dir });
    expect(broken).toMatchObject({ usable: false, reason: 'load_error' });
    expect(broken.detail).toMatch(/invalid ELF header|file too short|not load/);
  });

  it('classifies onnxruntime\'s load errors', () => {
    const log = (cause: string) => `\x1b[1;31m2026 [E:onnxruntime:onnxruntime-node, provider_bridge_ort.cc:2146 Create] ... Failed to load library /x/libonnxruntime_providers_cuda.so with error: ${cause}\n\x1b[m`;
    const msg = 'OrtSessionOptionsAppendExecutionProvider_Cuda: Failed to load shared library';
    expect(classifyCudaFailure(msg, log('libcuda.so.1: cannot open shared object file: No such file or directory'))).toMatchObject({ reason: 'driver_missing' });
    const runtime = classifyCudaFailure(msg, log('libcublasLt.so.12: cannot open shared object file: No such file or directory'));
    expect(runtime.reason).toBe('load_error');
    expect(runtime.detail).toMatch(/libcublasLt\.so\.12.*CUDA 12 runtime and cuDNN 9/);
    expect(classifyCudaFailure('CUDA failure 100: no CUDA-capable device is detected ; GPU=0', '')).toMatchObject({ reason: 'no_device' });
    expect(classifyCudaFailure('CUDA failure 35: CUDA driver version is insufficient for CUDA runtime version', '')).toMatchObject({ reason: 'no_device' });
    expect(classifyCudaFailure('something else', '')).toEqual({ reason: 'load_error', detail: 'the CUDA provider did not load: something else' });
  });
});

describe('installing the provider', () => {
  it('parses sources', () => {
    expect(parseSource('nuget')).toEqual({ kind: 'nuget' });
    expect(parseSource('npm:@acme/ort-cuda@1.30.0')).toEqual({ kind: 'npm', spec: '@acme/ort-cuda@1.30.0' });
    expect(parseSource('file:/tmp/x.nupkg')).toEqual({ kind: 'path', path: '/tmp/x.nupkg' });
    expect(() => parseSource('file:')).toThrow(/--from/);
  });

  it.runIf(linuxX64)('refuses another version, places the right one with a marker, checks an archive\'s SHA-256', async () => {
    const dir = await ortCopy('install');
    const bin = ortPackage(dir).binDir;
    const src = join(root, 'src', 'runtimes', 'linux-x64', 'native');
    await mkdir(src, { recursive: true });
    await writeFile(join(src, 'libonnxruntime_providers_shared.so'), fakeLib());
    await writeFile(join(src, 'libonnxruntime_providers_cuda.so'), fakeLib('1.29.0'));
    await expect(installProvider({ kind: 'path', path: join(root, 'src') }, { ortDir: dir })).rejects.toThrow(/onnxruntime 1\.29\.0, onnxruntime-node is .* refused/);
    expect(existsSync(join(bin, 'libonnxruntime_providers_cuda.so'))).toBe(false);

    await writeFile(join(src, 'libonnxruntime_providers_cuda.so'), fakeLib(real.version));
    const { marker } = await installProvider({ kind: 'path', path: join(root, 'src') }, { ortDir: dir });
    expect(marker.ortVersion).toBe(real.version);
    expect(marker.files.map((f) => f.name)).toEqual([...CUDA_PROVIDER_LIBS]);
    expect(marker.files[1]!.sha256).toBe(await sha256File(join(src, 'libonnxruntime_providers_cuda.so')));
    expect(markerSchema.parse(JSON.parse(await readFile(join(bin, MARKER_FILE), 'utf8')))).toEqual(marker);

    // A .tgz (as onnxruntime's release, or a carried npm tarball) with the wrong checksum is refused before unpacking.
    const { execFileSync } = await import('node:child_process');
    const tgz = join(root, 'provider.tgz');
    execFileSync('tar', ['-czf', tgz, '-C', join(root, 'src'), '.']);
    await expect(installProvider({ kind: 'path', path: tgz }, { ortDir: dir, sha256: '0'.repeat(64) })).rejects.toThrow(/SHA-256 [0-9a-f]{64}, expected 0{64}/);
    const again = await installProvider({ kind: 'path', path: tgz }, { ortDir: dir, sha256: await sha256File(tgz) });
    expect(again.marker.source).toBe(tgz);
  });
});

describe('pool-agent hardware and the serve provider', () => {
  const io = () => {
    const out: string[] = [];
    return { out, io: { out: (l: string) => out.push(l), err: () => {}, env: {} } };
  };
  const unusable: ProviderStatus = { name: 'cuda', usable: false, reason: 'library_missing', detail: 'libonnxruntime_providers_cuda.so not in /x' };

  it('lists the providers, JSON and text', async () => {
    const json = io();
    expect(await runHardware(['--json'], json.io)).toBe(0);
    const parsed = JSON.parse(json.out[0]!) as { devices: unknown[]; providers: ProviderStatus[] };
    expect(parsed.devices.length).toBeGreaterThan(0);
    expect(parsed.providers[0]).toMatchObject({ name: 'cpu', usable: true });
    expect(parsed.providers[1]!.name).toBe('cuda');
    if (!parsed.providers[1]!.usable) expect(CUDA_UNUSABLE_REASONS).toContain(parsed.providers[1]!.reason);
    const text = io();
    expect(await runHardware([], text.io, { providers: async () => [{ name: 'cpu', usable: true, detail: 'bundled' }, unusable] })).toBe(0);
    expect(text.out[0]).toMatch(/^EP {3}cpu {4}usable: bundled$/m);
    expect(text.out[0]).toMatch(/^EP {3}cuda {3}not usable \(library_missing\): libonnxruntime_providers_cuda\.so not in \/x$/m);
  });

  it('refuses --provider cuda with the reason, falls back to the CPU on auto, probes listed CUDA devices', async () => {
    const logged: unknown[] = [];
    const log = { info: (msg: string, f?: Record<string, unknown>) => logged.push({ msg, ...f }) };
    const probed: number[] = [];
    const probe = async (id: number) => (probed.push(id), id === 0 ? unusable : { name: 'cuda' as const, usable: true as const, detail: 'ran', deviceId: id });
    const refused = resolveProvider({ provider: 'cuda' }, log, probe);
    await expect(refused).rejects.toThrow(CliError);
    await expect(resolveProvider({ provider: 'cuda' }, log, probe)).rejects.toThrow(/--provider cuda: CUDA is not usable here \(library_missing\): libonnxruntime_providers_cuda\.so not in \/x/);
    expect(await resolveProvider({ provider: 'auto' }, log, probe)).toBe('cpu');
    expect(logged.at(-1)).toMatchObject({ msg: expect.stringMatching(/loading the span on the CPU/), reason: 'library_missing' });
    expect(await resolveProvider({ provider: 'cpu' }, log, async () => expect.fail('cpu needs no probe'))).toBe('cpu');
    probed.length = 0;
    expect(await resolveProvider({ provider: 'auto', devices: ['cuda:1', 'cpu'] }, log, probe)).toBe('auto');
    expect(probed).toEqual([1]);
    await expect(resolveProvider({ provider: 'auto', devices: ['cuda:1', 'cuda:0'] }, log, probe)).rejects.toThrow(/device cuda:0 cannot be used/);
    const usable = async (id: number): Promise<ProviderStatus> => ({ name: 'cuda', usable: true, detail: 'ran', deviceId: id });
    expect(await resolveProvider({ provider: 'auto' }, log, usable)).toBe('cuda');
  });

  it('serve --provider cuda exits 1 with the reason before loading anything, where CUDA is not usable', async () => {
    const cuda = await probeCuda();
    if (cuda.usable) return; // a GPU host: serve would start
    const dir = join(root, 'agent');
    const quiet = io();
    expect(await main(['init', '--dir', dir], quiet.io)).toBe(0);
    await saveState(dir, { agentId: 'agent-1', edgeKeys: { k1: 'A'.repeat(43) }, bench: [] });
    const model = join(root, 'tiny');
    await buildModel({ preset: 'tiny', dtype: 'float32', seed: 0, outDir: model });
    const err: string[] = [];
    const code = await main(['serve', '--dir', dir, '--model', model, '--provider', 'cuda'], { out: () => {}, err: (l) => err.push(l), env: {} });
    expect(code).toBe(1);
    expect(err.join('\n')).toContain(`--provider cuda: CUDA is not usable here (${cuda.reason}): ${cuda.detail}`);
  });
});
