/** `pool-agent hardware`: what this host offers (GPUs via nvidia-smi, else CPU and memory). */
import { describeHardware, detectHardware } from '../hardware.js';
import { parseFlags, type CliIo } from './args.js';

export const HARDWARE_USAGE = `Usage: pool-agent hardware [--json]

Lists the GPUs (nvidia-smi) or, without them, the CPU and memory this host offers.`;

export async function runHardware(argv: string[], io: CliIo): Promise<number> {
  const { values, help } = parseFlags(argv, { json: { type: 'boolean' } }, HARDWARE_USAGE);
  if (help) return io.out(HARDWARE_USAGE), 0;
  const hw = await detectHardware();
  io.out(values.json ? JSON.stringify(hw) : describeHardware(hw));
  return 0;
}
