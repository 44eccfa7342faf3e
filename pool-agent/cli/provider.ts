/**
 * Which execution provider `serve` (and `bench`) load the span on, decided before loading it:
 * `cuda` (or a `--devices` list naming CUDA devices) is refused with the probe's reason when CUDA
 * cannot run here; `auto` takes CUDA when the probe ran a session on it, else the CPU, and says
 * so in the log.
 *
 * @example
 * const provider = await resolveProvider(config, log); // 'cpu' | 'cuda'
 * await loadAgentSpan(modelDir, layers, { ...config, provider });
 */
import type { Logger } from '../log.js';
import { probeCudaCached, type ProviderStatus } from '../runtime/cuda.js';
import { parseDevices } from '../runtime/local-pipeline.js';
import type { ExecutionProvider } from '../runtime/types.js';
import { CliError } from './args.js';

export type CudaProbe = (deviceId: number) => Promise<ProviderStatus>;

const HINT = '`pool-agent hardware` lists the usable providers; README "GPU hosts" installs CUDA\'s';

export async function resolveProvider(
  settings: { provider: 'auto' | ExecutionProvider; devices?: readonly string[] | undefined },
  log: Pick<Logger, 'info'>,
  probe: CudaProbe = probeCudaCached,
): Promise<ExecutionProvider | 'auto'> {
  if (settings.devices && settings.devices.length > 0) {
    let specs;
    try {
      specs = parseDevices(settings.devices.join(','));
    } catch (err) {
      throw new CliError((err as Error).message);
    }
    for (const id of new Set(specs.filter((d) => d.provider === 'cuda').map((d) => d.deviceId))) {
      const cuda = await probe(id);
      if (!cuda.usable) throw new CliError(`device cuda:${id} cannot be used: CUDA is not usable here (${cuda.reason}): ${cuda.detail}. ${HINT}`, 1);
    }
    // Each listed device names its own provider; `provider` is not read.
    return settings.provider;
  }
  if (settings.provider === 'cpu') return 'cpu';
  const cuda = await probe(0);
  if (cuda.usable) {
    log.info('CUDA is usable: loading the span on cuda:0', { detail: cuda.detail });
    return 'cuda';
  }
  if (settings.provider === 'cuda') {
    throw new CliError(`--provider cuda: CUDA is not usable here (${cuda.reason}): ${cuda.detail}. ${HINT}, or serve with --provider auto (CPU fallback) or cpu`, 1);
  }
  log.info('CUDA is not usable here: loading the span on the CPU (provider auto)', { reason: cuda.reason, detail: cuda.detail });
  return 'cpu';
}
