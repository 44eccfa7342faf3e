/** `pool-agent hardware`: what this host offers (GPUs via nvidia-smi, else CPU and memory). */
import { describeHardware, detectHardware } from '../hardware.js';
import { parseFlags, type CliIo } from './args.js';

export const HARDWARE_USAGE = `Usage: pool-agent hardware [--json] [--dir DIR]

Lists the GPUs (nvidia-smi) or, without them, the CPU and memory this host offers. --dir (the
state folder) is taken like every command's; the hardware is this host's whatever the folder.`;

export async function runHardware(argv: string[], io: CliIo): Promise<number> {
  // --dir is accepted so the owner's steps can all carry the same state folder; nothing here reads it.
  const { values, help } = parseFlags(argv, { json: { type: 'boolean' }, dir: { type: 'string' } }, HARDWARE_USAGE);
  if (help) return io.out(HARDWARE_USAGE), 0;
  const hw = await detectHardware();
  io.out(values.json ? JSON.stringify(hw) : describeHardware(hw));
  return 0;
}
