/**
 * Whether this host has the memory to load a span: loading holds the merged model, one file and
 * onnxruntime's copies at once, so its peak is a multiple of the span's file bytes. An agent killed
 * by the kernel half-way through loading says nothing; a warning before it starts does.
 *
 * @example
 * const warning = loadMemoryWarning(spanBytes, availableMemoryBytes(), weightFormat(manifest));
 * if (warning) log.warn(warning);
 */
import { readFileSync } from 'node:fs';
import { freemem } from 'node:os';
import type { ModelDtype, WeightFormat } from '../../protocol/manifest.js';

/**
 * Peak resident memory while loading a span on CPU over its files' bytes, as measured by
 * `npm run bench:load` (`small` whole 2.7, `1b` layers 0:5 2.4), rounded up.
 */
export const LOAD_PEAK_FACTOR = 2.8;

/**
 * The same factor per weight format (protocol/manifest.ts `weightFormat`): quantized files are
 * smaller, but onnxruntime repacks MatMulNBits weights for its int8 kernels beside the codes it
 * read, so their peak is a larger multiple of the file bytes (`npm run bench:load`, peak above the
 * process's start over the span's file bytes: int8 3.04 `small` whole, 3.16 `1b` layers 4:8;
 * int4 3.31 and 3.23, 3.6 `small` layers 1:7; float32 2.6 and 2.44 on the same spans), rounded up.
 */
export const LOAD_PEAK_FACTORS: Readonly<Record<ModelDtype | WeightFormat, number>> = {
  float32: LOAD_PEAK_FACTOR,
  float16: LOAD_PEAK_FACTOR,
  int8: 3.3,
  int4: 3.7,
};

/** Memory the kernel could give this process now: Linux's MemAvailable, else the free memory. */
export function availableMemoryBytes(meminfo?: string): number {
  try {
    const text = meminfo ?? readFileSync('/proc/meminfo', 'utf8');
    const kb = /^MemAvailable:\s+(\d+) kB$/m.exec(text);
    if (kb) return Number(kb[1]) * 1024;
  } catch {
    /* not Linux */
  }
  return freemem();
}

const gib = (n: number) => (n / 2 ** 30).toFixed(1);

/**
 * A warning when loading `fileBytes` of model files in weight format `format` (default float32)
 * would likely need more than `available`.
 */
export function loadMemoryWarning(fileBytes: number, available: number, format: ModelDtype | WeightFormat = 'float32'): string | null {
  const need = fileBytes * LOAD_PEAK_FACTORS[format];
  if (need <= available) return null;
  const what = format === 'int8' || format === 'int4' ? `${format} ` : '';
  return (
    `loading this span (${gib(fileBytes)} GiB of ${what}model files) may need about ${gib(need)} GiB of memory at its peak, ` +
    `and ${gib(available)} GiB is available: the kernel may kill the agent while it loads; serve fewer layers (--layers) or free memory`
  );
}
