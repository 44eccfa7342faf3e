/**
 * Server-sent events: framing for the edge, parsing for the SDK and tests.
 *
 * @example
 * controller.enqueue(sseData({ id: 'chatcmpl-1', choices: [] }));
 * for await (const ev of parseSse(response.body!)) if (ev.data === '[DONE]') break;
 */
import { utf8 } from './bytes.js';

export function sseData(data: unknown): Uint8Array {
  return utf8(`data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`);
}

export function sseComment(text: string): Uint8Array {
  return utf8(`: ${text.replace(/[\r\n]/g, ' ')}\n\n`);
}

export const SSE_DONE = utf8('data: [DONE]\n\n');

export interface SseEvent {
  event?: string;
  data: string;
  id?: string;
}

/** Parses an SSE byte stream into events (comments are skipped). Bounded line length. */
export async function* parseSse(body: ReadableStream<Uint8Array>, maxLineBytes = 4 * 1024 * 1024): AsyncGenerator<SseEvent> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let data: string[] = [];
  let event: string | undefined;
  let id: string | undefined;
  let finished = false;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) {
        finished = true;
        break;
      }
      buffer += decoder.decode(value, { stream: true });
      if (buffer.length > maxLineBytes && !buffer.includes('\n')) throw new Error('SSE line too long');
      let nl: number;
      while ((nl = buffer.search(/\r\n|\n|\r/)) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(buffer[nl] === '\r' && buffer[nl + 1] === '\n' ? nl + 2 : nl + 1);
        if (line === '') {
          if (data.length) yield { data: data.join('\n'), ...(event ? { event } : {}), ...(id ? { id } : {}) };
          data = [];
          event = undefined;
          id = undefined;
          continue;
        }
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'data') data.push(value);
        else if (field === 'event') event = value;
        else if (field === 'id') id = value;
      }
    }
    if (data.length) yield { data: data.join('\n'), ...(event ? { event } : {}), ...(id ? { id } : {}) };
  } finally {
    // A consumer that stops early (break, throw) cancels the underlying request.
    if (!finished) await reader.cancel().catch(() => undefined);
    reader.releaseLock();
  }
}
