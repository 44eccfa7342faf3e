/**
 * Reads an agent's NDJSON job stream: one JobEvent per line, each line bounded, each read timed.
 * Pure over web streams (no runtime import).
 *
 * @example
 * for await (const ev of readJobEvents(res.body, () => 15_000)) { ... }
 */
import { jobEventSchema, MAX_JOB_EVENT_BYTES, type JobEvent } from '../../protocol/agent-api.js';

export class StreamFailure extends Error {
  override readonly name = 'StreamFailure';
  constructor(
    readonly kind: 'timeout' | 'malformed' | 'too_large' | 'disconnected',
    message: string,
  ) {
    super(message);
  }
}

/** Yields validated events; throws StreamFailure. `timeoutMs()` is read before each wait. */
export async function* readJobEvents(body: ReadableStream<Uint8Array>, timeoutMs: () => number): AsyncGenerator<JobEvent> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let finished = false;
  try {
    for (;;) {
      let nl = buffer.indexOf('\n');
      while (nl < 0) {
        if (buffer.length > MAX_JOB_EVENT_BYTES) throw new StreamFailure('too_large', 'agent event line too long');
        let timer: ReturnType<typeof setTimeout> | undefined;
        const timeout = new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new StreamFailure('timeout', 'agent did not send the next event in time')), timeoutMs());
        });
        let step: ReadableStreamReadResult<Uint8Array>;
        try {
          step = await Promise.race([reader.read(), timeout]);
        } catch (err) {
          if (err instanceof StreamFailure) throw err;
          throw new StreamFailure('disconnected', 'agent stream broke');
        } finally {
          clearTimeout(timer);
        }
        if (step.done) {
          finished = true;
          // A stream cut inside an event is a broken connection, not a malformed event.
          if (buffer.trim()) throw new StreamFailure('disconnected', 'agent stream ended inside an event');
          return;
        }
        buffer += decoder.decode(step.value, { stream: true });
        nl = buffer.indexOf('\n');
      }
      const line = buffer.slice(0, nl).trim();
      buffer = buffer.slice(nl + 1);
      if (!line) continue;
      if (line.length > MAX_JOB_EVENT_BYTES) throw new StreamFailure('too_large', 'agent event line too long');
      let json: unknown;
      try {
        json = JSON.parse(line);
      } catch {
        throw new StreamFailure('malformed', 'agent sent a line that is not JSON');
      }
      const parsed = jobEventSchema.safeParse(json);
      if (!parsed.success) throw new StreamFailure('malformed', 'agent sent an event that does not match the schema');
      yield parsed.data;
    }
  } finally {
    if (!finished) await reader.cancel().catch(() => undefined);
    reader.releaseLock();
  }
}
