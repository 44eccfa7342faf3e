/**
 * Whether this host has the memory to load a span: loading holds the merged model, one file and
 * onnxruntime's copies at once, so its peak is a multiple of the span's file bytes. An agent killed
 * by the kernel half-way through loading says nothing; a warning before it starts does.
 *
 * @example
 * const warning = loadMemoryWarning(spanBytes, availableMemoryBytes());
 * if (warning) log.warn(warning);
 */
import { readFileSync } from 'node:fs';
import { freemem } from 'node:os';

/**
 * Peak resident memory while loading a span on CPU over its files' bytes, as measured by
 * `npm run bench:load` (`small` whole 2.7, `1b` layers 0:5 2.4), rounded up.
 */
export const LOAD_PEAK_FACTOR = 2.8;

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

/** A warning when loading `fileBytes` of model files would likely need more than `available`. */
export function loadMemoryWarning(fileBytes: number, available: number): string | null {
  const need = fileBytes * LOAD_PEAK_FACTOR;
  if (need <= available) return null;
  return (
    `loading this span (${gib(fileBytes)} GiB of model files) may need about ${gib(need)} GiB of memory at its peak, ` +
    `and ${gib(available)} GiB is available: the kernel may kill the agent while it loads; serve fewer layers (--layers) or free memory`
  );
}
