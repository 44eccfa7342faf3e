/**
 * The edge's log sink, with throttling of conditions that hold for every request of a known
 * setup: an entry carrying `throttle: KEY` is written at most once per `windowMs` per key in this
 * isolate, with `repeats` (how many the window held back) on the next one written. The demo
 * network, for one, has no independent checker for jobs its whole-model agent served: said once
 * per model, not on every request.
 *
 * @example
 * const log = throttledLog((e) => console.warn(JSON.stringify(e)), () => Date.now());
 * log({ level: 'warn', msg: 'no independent checker is available', throttle: `no_checker:${modelId}` });
 */

export type LogSink = (entry: Record<string, unknown>) => void;

/** Ten minutes: often enough that a condition still holding is seen, rarely enough to read the rest. */
export const LOG_THROTTLE_WINDOW_MS = 10 * 60_000;
const MAX_KEYS = 1_000;

export function throttledLog(sink: LogSink, now: () => number, windowMs = LOG_THROTTLE_WINDOW_MS): LogSink {
  const seen = new Map<string, { at: number; held: number }>();
  return (entry) => {
    const key = entry.throttle;
    if (typeof key !== 'string') return sink(entry);
    const { throttle: _, ...rest } = entry;
    const t = now();
    const last = seen.get(key);
    if (last && t - last.at < windowMs) {
      last.held++;
      return;
    }
    if (!last && seen.size >= MAX_KEYS) seen.delete(seen.keys().next().value!);
    seen.set(key, { at: t, held: 0 });
    sink({ ...rest, ...(last?.held ? { repeats: last.held } : {}), throttled: `at most once every ${Math.round(windowMs / 60_000)} min` });
  };
}
