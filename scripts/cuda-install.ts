/**
 * Installs onnxruntime-node's CUDA provider libraries next to its binding, from one of:
 *
 * - `nuget`: onnxruntime-node's own install script (script/install.js) with
 *   ONNXRUNTIME_NODE_INSTALL=cuda12, which downloads Microsoft.ML.OnnxRuntime.Gpu.Linux (the
 *   onnxruntime-node version) from api.nuget.org and extracts the libraries into
 *   bin/napi-v6/linux/x64. The environment variable wins over `.npmrc`'s skip, and running the
 *   script directly needs no npm approval (`allowScripts`), so CPU hosts keep skipping it.
 * - `npm:SPEC`: a package from the npm registry (or the registry npm is set up for: a private
 *   mirror) that holds the two libraries anywhere in its files (`npm pack`, integrity checked
 *   by npm). No public package holds them for onnxruntime 1.30 (README "GPU hosts").
 * - a file or folder: the .nupkg above or onnxruntime's linux-x64-gpu release .tgz, carried to
 *   an offline host, or a folder holding the libraries.
 *
 * Whatever the source, the CUDA library must name onnxruntime-node's own version (a library of
 * another version is refused: the provider bridge is no stable ABI), `--sha256` checks an
 * archive, and a marker file records the source and each library's SHA-256.
 */
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { z } from 'zod';
import { CUDA_PROVIDER_LIBS, libraryOrtVersions, ortPackage, type OrtPackage } from '../pool-agent/runtime/cuda.js';

export const MARKER_FILE = 'layernet-cuda-provider.json';

export const markerSchema = z.object({
  source: z.string().max(1024),
  ortVersion: z.string().max(64),
  installedAt: z.string().max(64),
  files: z.array(z.object({ name: z.string().max(256), bytes: z.number().int().nonnegative(), sha256: z.string().regex(/^[0-9a-f]{64}$/) })).max(8),
});
export type Marker = z.infer<typeof markerSchema>;

export type ProviderSource = { kind: 'nuget' } | { kind: 'npm'; spec: string } | { kind: 'path'; path: string };

export function parseSource(text: string): ProviderSource {
  if (text === 'nuget') return { kind: 'nuget' };
  if (text.startsWith('npm:') && text.length > 4) return { kind: 'npm', spec: text.slice(4) };
  const path = text.startsWith('file:') ? text.slice(5) : text;
  if (!path) throw new Error(`--from must be nuget, npm:SPEC or a file/folder path, got ${JSON.stringify(text)}`);
  return { kind: 'path', path };
}

export const sourceName = (s: ProviderSource): string => (s.kind === 'nuget' ? 'nuget (onnxruntime-node script/install.js)' : s.kind === 'npm' ? `npm:${s.spec}` : s.path);

export interface InstallOptions {
  /** onnxruntime-node folder (default: the one this project uses). */
  ortDir?: string;
  /** Expected SHA-256 (hex) of the archive (npm tarball, .nupkg, .tgz). */
  sha256?: string;
  /** Longest a download may take (default 10 min). */
  timeoutMs?: number;
  log?: (line: string) => void;
}

export interface InstallResult {
  marker: Marker;
  binDir: string;
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

function run(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs: number }): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { cwd: opts.cwd, env: opts.env, timeout: opts.timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')} failed: ${(stderr || err.message).trim().split('\n').slice(-3).join(' | ')}`));
      else resolve(stdout);
    });
  });
}

const packJsonSchema = z.array(z.object({ name: z.string(), version: z.string(), filename: z.string(), integrity: z.string(), files: z.array(z.object({ path: z.string(), size: z.number() })) })).min(1);

/** The provider libraries under `dir` (any depth), by file name. */
async function findLibs(dir: string, depth = 8): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  const walk = async (d: string, left: number): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory() && left > 0) await walk(p, left - 1);
      else if (e.isFile() && (CUDA_PROVIDER_LIBS as readonly string[]).includes(e.name) && !found.has(e.name)) found.set(e.name, p);
    }
  };
  await walk(dir, depth);
  return found;
}

interface ZipEntry {
  entryName: string;
  getData(): Buffer;
}

/** Extracts the provider libraries of a .nupkg (a zip) with adm-zip, which onnxruntime-node's own install uses. */
async function unzipLibs(pkg: OrtPackage, archive: string, into: string): Promise<void> {
  const AdmZip = createRequire(join(pkg.dir, 'package.json'))('adm-zip') as new (path: string) => { getEntries(): ZipEntry[] };
  for (const e of new AdmZip(archive).getEntries()) {
    if ((CUDA_PROVIDER_LIBS as readonly string[]).includes(basename(e.entryName))) await writeFile(join(into, basename(e.entryName)), e.getData());
  }
}

/** Unpacks an archive or takes a folder; returns the folder to search. */
async function unpack(pkg: OrtPackage, path: string, work: string, timeoutMs: number): Promise<string> {
  const st = await stat(path).catch(() => null);
  if (!st) throw new Error(`${path} does not exist`);
  if (st.isDirectory()) return path;
  const out = join(work, 'unpacked');
  await mkdir(out, { recursive: true });
  if (/\.(nupkg|zip)$/i.test(path)) await unzipLibs(pkg, path, out);
  else if (/\.(tgz|tar\.gz)$/i.test(path)) await run('tar', ['-xzf', path, '-C', out], { timeoutMs });
  else throw new Error(`${path}: expected a .nupkg, .zip, .tgz or .tar.gz archive, or a folder`);
  return out;
}

/** Fetches `spec` with npm pack (after a dry run shows it holds the libraries). */
async function npmFetch(spec: string, work: string, timeoutMs: number, log: (l: string) => void): Promise<{ tarball: string; integrity: string; id: string }> {
  const dry = packJsonSchema.parse(JSON.parse(await run('npm', ['pack', spec, '--dry-run', '--json', '--ignore-scripts'], { cwd: work, timeoutMs: 120_000 })))[0]!;
  const names = new Set(dry.files.map((f) => basename(f.path)));
  const lacking = CUDA_PROVIDER_LIBS.filter((l) => !names.has(l));
  if (lacking.length) throw new Error(`npm package ${dry.name}@${dry.version} holds no ${lacking.join(' or ')}`);
  const mb = Math.round(dry.files.reduce((n, f) => n + f.size, 0) / 2 ** 20);
  log(`fetching ${dry.name}@${dry.version} (${mb} MiB unpacked) with npm pack`);
  const got = packJsonSchema.parse(JSON.parse(await run('npm', ['pack', spec, '--json', '--ignore-scripts', '--pack-destination', work], { cwd: work, timeoutMs })))[0]!;
  return { tarball: join(work, got.filename), integrity: got.integrity, id: `${got.name}@${got.version}` };
}

/** Runs onnxruntime-node's own install script for the CUDA 12 provider (it downloads from nuget). */
function ortOwnInstall(pkg: OrtPackage, timeoutMs: number, log: (l: string) => void): Promise<void> {
  const script = join(pkg.dir, 'script', 'install.js');
  if (!existsSync(script)) return Promise.reject(new Error(`${script} is missing`));
  log(`running ${script} with ONNXRUNTIME_NODE_INSTALL=cuda12 (downloads Microsoft.ML.OnnxRuntime.Gpu.Linux ${pkg.version} from api.nuget.org)`);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script], { cwd: pkg.dir, env: { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'cuda12' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let tail = '';
    const keep = (d: Buffer) => {
      tail = (tail + d.toString('utf8')).slice(-4000);
      for (const line of d.toString('utf8').split('\n')) if (line.trim()) log(`  ${line.trim()}`);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      // Its failures are unhandled rejections: the "Error: ..." line is the cause.
      const cause = [...tail.matchAll(/^\s*(?:\w*Error|FAIL)\b:? ?(.+)$/gm)].pop()?.[0]?.trim() ?? tail.trim().split('\n').slice(-2).join(' | ');
      if (code === 0) resolve();
      else reject(new Error(`onnxruntime-node's install script failed (${signal ?? `exit ${code}`}): ${cause || 'no output'}`));
    });
  });
}

/** Checks the CUDA library's version against onnxruntime-node's; returns a warning when it names none. */
export async function checkLibraryVersion(cudaLib: string, ortVersion: string): Promise<string | undefined> {
  const versions = await libraryOrtVersions(cudaLib);
  if (versions.length === 0) return `${basename(cudaLib)} names no onnxruntime version: cannot check it is ${ortVersion} (the probe runs it in a child process)`;
  if (!versions.includes(ortVersion)) throw new Error(`${basename(cudaLib)} is onnxruntime ${versions.join('/')}, onnxruntime-node is ${ortVersion}: refused (another version's provider can crash the process)`);
  return undefined;
}

/** Copies the libraries into the binding's folder (each through a temporary name) and writes the marker. */
async function place(pkg: OrtPackage, libs: Map<string, string>, source: string): Promise<Marker> {
  const files: Marker['files'] = [];
  for (const name of CUDA_PROVIDER_LIBS) {
    const from = libs.get(name)!;
    const to = join(pkg.binDir, name);
    await copyFile(from, `${to}.partial`);
    await rename(`${to}.partial`, to);
    files.push({ name, bytes: (await stat(to)).size, sha256: await sha256File(to) });
  }
  const marker: Marker = { source, ortVersion: pkg.version, installedAt: new Date().toISOString(), files };
  await writeFile(join(pkg.binDir, MARKER_FILE), JSON.stringify(marker, null, 2) + '\n');
  return marker;
}

export async function installProvider(source: ProviderSource, options: InstallOptions = {}): Promise<InstallResult> {
  const log = options.log ?? (() => {});
  const timeoutMs = options.timeoutMs ?? 600_000;
  const pkg = ortPackage(options.ortDir);
  if (process.platform !== 'linux' || process.arch !== 'x64') throw new Error(`onnxruntime-node's CUDA provider exists for linux-x64 only, not ${process.platform}-${process.arch}`);
  const work = await mkdtemp(join(tmpdir(), 'layernet-cuda-'));
  try {
    let libs: Map<string, string>;
    let label = sourceName(source);
    if (source.kind === 'nuget') {
      await ortOwnInstall(pkg, timeoutMs, log);
      libs = await findLibs(pkg.binDir, 0);
    } else {
      let archive: string | undefined;
      if (source.kind === 'npm') {
        const got = await npmFetch(source.spec, work, timeoutMs, log);
        archive = got.tarball;
        label = `npm:${got.id} (${got.integrity})`;
      } else if ((await stat(source.path).catch(() => null))?.isFile()) archive = source.path;
      if (archive && options.sha256) {
        const sha = await sha256File(archive);
        if (sha !== options.sha256.toLowerCase()) throw new Error(`${basename(archive)} has SHA-256 ${sha}, expected ${options.sha256}`);
        log(`${basename(archive)}: SHA-256 matches`);
      }
      libs = await findLibs(await unpack(pkg, archive ?? (source as { path: string }).path, work, timeoutMs));
    }
    const lacking = CUDA_PROVIDER_LIBS.filter((l) => !libs.has(l));
    if (lacking.length) throw new Error(`${label} gave no ${lacking.join(' or ')}`);
    const warning = await checkLibraryVersion(libs.get('libonnxruntime_providers_cuda.so')!, pkg.version);
    if (warning) log(`warning: ${warning}`);
    const marker = await place(pkg, libs, label);
    log(`installed ${CUDA_PROVIDER_LIBS.join(', ')} (onnxruntime ${pkg.version}) into ${pkg.binDir}`);
    return { marker, binDir: pkg.binDir };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** The marker of the installed libraries, when this script installed them. */
export async function readMarker(ortDir?: string): Promise<Marker | undefined> {
  const path = join(ortPackage(ortDir).binDir, MARKER_FILE);
  if (!existsSync(path)) return undefined;
  return markerSchema.parse(JSON.parse(await readFile(path, 'utf8')));
}

/** Removes the provider libraries (and tensorrt's, which onnxruntime's own install adds) and the marker. */
export async function removeProvider(ortDir?: string): Promise<string[]> {
  const pkg = ortPackage(ortDir);
  const names = [...CUDA_PROVIDER_LIBS, 'libonnxruntime_providers_tensorrt.so', MARKER_FILE];
  const removed = names.filter((n) => existsSync(join(pkg.binDir, n)));
  await Promise.all(removed.map((n) => rm(join(pkg.binDir, n), { force: true })));
  return removed;
}

/**
 * Writes an npm package folder holding the installed libraries, for a private registry that
 * offline hosts reach (`npm publish DIR`, then `install --from npm:NAME@VERSION` there).
 */
export async function packProvider(outDir: string, name: string, ortDir?: string): Promise<string> {
  const pkg = ortPackage(ortDir);
  for (const lib of CUDA_PROVIDER_LIBS) if (!existsSync(join(pkg.binDir, lib))) throw new Error(`${lib} is not installed in ${pkg.binDir}: install it first`);
  await checkLibraryVersion(join(pkg.binDir, 'libonnxruntime_providers_cuda.so'), pkg.version);
  await mkdir(join(outDir, 'lib'), { recursive: true });
  for (const lib of CUDA_PROVIDER_LIBS) await copyFile(join(pkg.binDir, lib), join(outDir, 'lib', lib));
  const manifest = {
    name,
    version: pkg.version,
    description: `onnxruntime ${pkg.version} CUDA 12 execution provider libraries for onnxruntime-node ${pkg.version} (linux-x64), repackaged from Microsoft.ML.OnnxRuntime.Gpu.Linux (MIT)`,
    license: 'MIT',
    os: ['linux'],
    cpu: ['x64'],
    files: CUDA_PROVIDER_LIBS.map((l) => `lib/${l}`),
  };
  await writeFile(join(outDir, 'package.json'), JSON.stringify(manifest, null, 2) + '\n');
  return join(outDir, 'package.json');
}
