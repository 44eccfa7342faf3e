/** Flag parsing shared by the commands (node:util parseArgs, strict: unknown flags are errors). */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { filesForSpan, type Manifest } from '../../protocol/manifest.js';

export class CliError extends Error {
  override readonly name = 'CliError';
  constructor(
    message: string,
    readonly exitCode = 2,
  ) {
    super(message);
  }
}

export interface CliIo {
  out: (line: string) => void;
  err: (line: string) => void;
  env: NodeJS.ProcessEnv;
}

export const processIo: CliIo = {
  out: (l) => process.stdout.write(l + '\n'),
  err: (l) => process.stderr.write(l + '\n'),
  env: process.env,
};

type Options = NonNullable<ParseArgsConfig['options']>;

/** `positionals`: whether the command takes arguments besides flags (else one is a usage error). */
export function parseFlags<O extends Options>(
  argv: string[],
  options: O,
  usage: string,
  positionals = false,
): { values: Record<string, string | boolean | undefined>; positionals: string[]; help: boolean } {
  try {
    const parsed = parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, strict: true, allowPositionals: true });
    if (parsed.positionals.length && !positionals) throw new CliError(`unexpected argument ${JSON.stringify(parsed.positionals[0])}\n\n${usage}`);
    return { values: parsed.values as Record<string, string | boolean | undefined>, positionals: parsed.positionals, help: (parsed.values as Record<string, unknown>).help === true };
  } catch (err) {
    if (err instanceof CliError) throw err;
    throw new CliError(`${(err as Error).message}\n\n${usage}`);
  }
}

/** "a:b" -> [a, b) with a < b. */
export function parseLayers(text: string | undefined): [number, number] | undefined {
  if (text === undefined) return undefined;
  const m = /^(\d+):(\d+)$/.exec(text);
  if (!m || Number(m[1]) >= Number(m[2])) throw new CliError(`--layers must be START:END with START < END (e.g. 0:4), got ${JSON.stringify(text)}`);
  return [Number(m[1]), Number(m[2])];
}

/** The bytes of the span's model files, or a usage error when the layers are not the model's. */
export function spanFileBytes(manifest: Manifest, layers: readonly [number, number]): number {
  try {
    return filesForSpan(manifest, { start: layers[0], end: layers[1] }).reduce((n, f) => n + f.bytes, 0);
  } catch (err) {
    throw err instanceof RangeError ? new CliError(`layers ${layers[0]}:${layers[1]}: ${err.message}`) : err;
  }
}

export function parseNumber(name: string, text: string | undefined, opts: { int?: boolean; min?: number; max?: number } = {}): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isFinite(n) || (opts.int && !Number.isInteger(n)) || (opts.min !== undefined && n < opts.min) || (opts.max !== undefined && n > opts.max)) {
    throw new CliError(`--${name} must be ${opts.int ? 'an integer' : 'a number'}${opts.min !== undefined ? ` >= ${opts.min}` : ''}${opts.max !== undefined ? ` <= ${opts.max}` : ''}, got ${JSON.stringify(text)}`);
  }
  return n;
}

export const str = (v: string | boolean | undefined): string | undefined => (typeof v === 'string' ? v : undefined);
