/**
 * `pool-agent hardware`: what this host offers (GPUs via nvidia-smi, else CPU and memory) and
 * which onnxruntime execution providers are usable here (pool-agent/runtime/cuda.ts probes CUDA).
 */
import { describeHardware, detectHardware } from '../hardware.js';
import { describeProviders, listProviders, type ProviderStatus } from '../runtime/cuda.js';
import { parseFlags, type CliIo } from './args.js';

export const HARDWARE_USAGE = `Usage: pool-agent hardware [--json] [--dir DIR]

Lists the GPUs (nvidia-smi) or, without them, the CPU and memory this host offers, then the
onnxruntime execution providers: cpu always; cuda when its provider libraries are installed, are
of this onnxruntime version, and a CUDA session really runs (a tiny graph, in a child process,
30 s at most), else the reason (library_missing, version_mismatch, driver_missing, no_device,
load_error, timeout, crashed). --json: {devices, memoryBytes, platform, providers}. --dir (the
state folder) is taken like every command's; the hardware is this host's whatever the folder.`;

export interface HardwareDeps {
  providers?: () => Promise<ProviderStatus[]>;
}

export async function runHardware(argv: string[], io: CliIo, deps: HardwareDeps = {}): Promise<number> {
  // --dir is accepted so the owner's steps can all carry the same state folder; nothing here reads it.
  const { values, help } = parseFlags(argv, { json: { type: 'boolean' }, dir: { type: 'string' } }, HARDWARE_USAGE);
  if (help) return io.out(HARDWARE_USAGE), 0;
  const hw = await detectHardware();
  const gpus = hw.devices.filter((d) => d.kind === 'cuda').length;
  const providers = await (deps.providers ?? (() => listProviders({}, Math.max(gpus, 1))))();
  io.out(values.json ? JSON.stringify({ ...hw, providers }) : `${describeHardware(hw)}\n${describeProviders(providers)}`);
  return 0;
}
