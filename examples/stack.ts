/**
 * Where the examples find the network: LAYERNET_BASE_URL / LAYERNET_API_KEY / LAYERNET_MODEL,
 * else `.dev/stack.json` as written by `npm start` (`{ edge, apiKey, model? }`).
 *
 * @example
 * const { client, model } = await connect({ verify: true });
 */
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { LayerNet, type ClientOptions } from '../sdk/src/index.js';

const stackSchema = z.object({ edge: z.string().url(), apiKey: z.string().min(1), model: z.string().min(1).optional() }).passthrough();

export async function readStack(path = new URL('../.dev/stack.json', import.meta.url)): Promise<z.infer<typeof stackSchema> | null> {
  try {
    return stackSchema.parse(JSON.parse(await readFile(path, 'utf8')));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new Error(`.dev/stack.json is not usable: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** A client for the local (or configured) network, and the model to use. */
export async function connect(options: ClientOptions = {}): Promise<{ client: LayerNet; model: string }> {
  const env = process.env;
  const stack = env.LAYERNET_BASE_URL && env.LAYERNET_API_KEY ? null : await readStack();
  const baseURL = env.LAYERNET_BASE_URL ?? stack?.edge;
  const apiKey = env.LAYERNET_API_KEY ?? stack?.apiKey;
  if (!baseURL || !apiKey) {
    throw new Error('no network: set LAYERNET_BASE_URL and LAYERNET_API_KEY, or run `npm start` (it writes .dev/stack.json)');
  }
  const client = new LayerNet({ baseURL, apiKey, ...options });
  let model = env.LAYERNET_MODEL ?? stack?.model;
  if (!model) {
    const models = await client.models.list();
    const served = models.data.find((m) => m.agents > 0) ?? models.data[0];
    if (!served) throw new Error('the network has no published model');
    model = served.id;
  }
  return { client, model };
}
