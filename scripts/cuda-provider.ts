/**
 * onnxruntime-node's CUDA provider on a GPU host (README "GPU hosts").
 *
 *   node --import tsx scripts/cuda-provider.ts status [--json]
 *   node --import tsx scripts/cuda-provider.ts install [--from nuget|npm:SPEC|PATH] [--sha256 HEX] [--timeout SECONDS]
 *   node --import tsx scripts/cuda-provider.ts pack --out DIR [--name NAME]
 *   node --import tsx scripts/cuda-provider.ts remove
 *
 * `install` (default --from nuget, onnxruntime-node's own download) puts the provider libraries
 * next to the binding, then probes a CUDA session and says whether it is usable, and why not.
 * Exit 0 when installed and usable, 1 when installed but not usable (the reason is printed), 2 on
 * a usage error, 3 when the install failed.
 */
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { describeProviders, probeCuda } from '../pool-agent/runtime/cuda.js';
import { installProvider, packProvider, parseSource, readMarker, removeProvider } from './cuda-install.js';

const USAGE = `Usage: node --import tsx scripts/cuda-provider.ts status [--json]
       node --import tsx scripts/cuda-provider.ts install [--from nuget|npm:SPEC|PATH] [--sha256 HEX] [--timeout SECONDS]
       node --import tsx scripts/cuda-provider.ts pack --out DIR [--name NAME]
       node --import tsx scripts/cuda-provider.ts remove

install --from:
  nuget      onnxruntime-node's own install (script/install.js, ONNXRUNTIME_NODE_INSTALL=cuda12):
             downloads Microsoft.ML.OnnxRuntime.Gpu.Linux from api.nuget.org (default)
  npm:SPEC   a registry package holding libonnxruntime_providers_{shared,cuda}.so of this
             onnxruntime-node version (a private registry's, see pack)
  PATH       that .nupkg or onnxruntime's onnxruntime-linux-x64-gpu-VERSION.tgz carried to this
             host, or a folder holding the two libraries
pack: an npm package folder of the installed libraries, to npm publish to a private registry.`;

export async function main(argv: string[], out: (l: string) => void = console.log, err: (l: string) => void = console.error): Promise<number> {
  const [cmd, ...rest] = argv;
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({
      args: rest,
      options: { from: { type: 'string' }, sha256: { type: 'string' }, timeout: { type: 'string' }, out: { type: 'string' }, name: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
    }).values;
  } catch (e) {
    err(`${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help || cmd === '--help' || cmd === '-h') return out(USAGE), 0;
  if (cmd === 'status') {
    const [cuda, marker] = await Promise.all([probeCuda(), readMarker()]);
    if (values.json) out(JSON.stringify({ cuda, installed: marker ?? null }));
    else {
      out(describeProviders([cuda]));
      out(marker ? `installed by this script from ${marker.source} at ${marker.installedAt} (onnxruntime ${marker.ortVersion})` : 'no install record of this script');
    }
    return cuda.usable ? 0 : 1;
  }
  if (cmd === 'install') {
    const sha = typeof values.sha256 === 'string' ? values.sha256 : undefined;
    if (sha !== undefined && !/^[0-9a-fA-F]{64}$/.test(sha)) return err('--sha256 takes 64 hex digits'), 2;
    const timeoutS = typeof values.timeout === 'string' ? Number(values.timeout) : 600;
    if (!(timeoutS > 0)) return err('--timeout takes a positive number of seconds'), 2;
    let source;
    try {
      source = parseSource(typeof values.from === 'string' ? values.from : 'nuget');
    } catch (e) {
      return err((e as Error).message), 2;
    }
    try {
      await installProvider(source, { sha256: sha, timeoutMs: timeoutS * 1000, log: out });
    } catch (e) {
      err(`install failed: ${(e as Error).message}`);
      return 3;
    }
    const cuda = await probeCuda();
    out(describeProviders([cuda]));
    return cuda.usable ? 0 : 1;
  }
  if (cmd === 'pack') {
    if (typeof values.out !== 'string') return err(`pack needs --out DIR\n\n${USAGE}`), 2;
    try {
      const written = await packProvider(values.out, typeof values.name === 'string' ? values.name : 'onnxruntime-node-cuda-provider');
      out(`wrote ${written}: publish it to your registry (npm publish ${values.out} --registry URL), then on each host: install --from npm:NAME@VERSION`);
      return 0;
    } catch (e) {
      err(`pack failed: ${(e as Error).message}`);
      return 3;
    }
  }
  if (cmd === 'remove') {
    const removed = await removeProvider();
    out(removed.length ? `removed ${removed.join(', ')}` : 'nothing to remove');
    return 0;
  }
  err(USAGE);
  return 2;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) process.exitCode = await main(process.argv.slice(2));
