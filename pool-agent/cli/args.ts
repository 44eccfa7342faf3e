/** Flag parsing shared by the commands (node:util parseArgs, strict: unknown flags are usage errors). */
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

/** bench, register and serve without a model folder. */
export const NO_MODEL =
  'no model: pass --model DIR, or set modelDir in pool-agent.json (`pool-agent model build` and `model import` record it there once `pool-agent init` made the state folder)';

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

/**
 * Parses a command's flags; `--help`/`-h` is added to every command. `positionals`: whether the
 * command takes arguments besides flags (else one is a usage error). A flag the command does not
 * take, or one missing its value, is a CliError with one plain line first (never node's parser
 * message), a near spelling when there is one, then the command's usage.
 *
 * @example
 * const { values, help } = parseFlags(argv, { dir: { type: 'string' } }, USAGE);
 * // parseFlags(['--dri', 'x'], { dir: { type: 'string' } }, USAGE) throws
 * // CliError('unknown flag --dri (did you mean --dir?)\n\nUsage: ...')
 */
export function parseFlags<O extends Options>(
  argv: string[],
  options: O,
  usage: string,
  positionals = false,
): { values: Record<string, string | boolean | undefined>; positionals: string[]; help: boolean } {
  const all: Options = { ...options, help: { type: 'boolean', short: 'h' } };
  try {
    const parsed = parseArgs({ args: argv, options: all, strict: true, allowPositionals: true });
    if (parsed.positionals.length && !positionals) throw new CliError(`unexpected argument ${JSON.stringify(parsed.positionals[0])}\n\n${usage}`);
    return { values: parsed.values as Record<string, string | boolean | undefined>, positionals: parsed.positionals, help: (parsed.values as Record<string, unknown>).help === true };
  } catch (err) {
    if (err instanceof CliError) throw err;
    throw new CliError(`${flagProblem(err as Error & { code?: string }, all)}\n\n${usage}`);
  }
}

/** One plain line for a node:util parseArgs error. */
function flagProblem(err: Error & { code?: string }, options: Options): string {
  const named = /'(-{1,2}[^' <=]+)/.exec(err.message)?.[1];
  if (err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && named) {
    const near = nearestFlag(named, Object.keys(options));
    return `unknown flag ${named}${near ? ` (did you mean --${near}?)` : ''}`;
  }
  if (err.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && named) {
    const name = named.replace(/^-+/, '');
    const option = options[name] ?? Object.values(options).find((o) => o.short === name);
    if (option?.type === 'boolean') return `${named} takes no value`;
    return `${named} needs a value (${named} VALUE)`;
  }
  return err.message;
}

/** The known flag `typed` is a typo of (one edit away, two for longer names), if any. */
function nearestFlag(typed: string, names: string[]): string | undefined {
  const t = typed.replace(/^-+/, '');
  if (t.length < 3) return undefined;
  const limit = t.length > 4 ? 2 : 1;
  let best: { name: string; d: number } | undefined;
  for (const name of names) {
    const d = editDistance(t, name);
    if (d <= limit && (!best || d < best.d)) best = { name, d };
  }
  return best?.name;
}

/** Edits (insert, delete, replace, swap of neighbours) that turn a into b. */
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[a.length]![b.length]!;
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
