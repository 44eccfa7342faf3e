/**
 * Shared msw setup of the SDK's unit tests: a fake edge at http://edge.test that intercepts
 * fetch in Node, for canned answers only.
 *
 * msw hands the client a tee of each mocked body (the other branch goes to its response
 * events) and does not tie the body to the request's signal, so it cannot model how a real
 * streaming peer reacts to an abort or a cancel; test/unit/sdk-stream.test.ts uses a real
 * node:http server for that.
 */
import { setupServer } from 'msw/node';

export const BASE = 'http://edge.test';
export const server = setupServer();

/** A finished SSE body from `data:` payloads (objects are JSON-encoded), then `[DONE]` unless `done: false`. */
export function sseBody(events: unknown[], opts: { done?: boolean } = {}): ReadableStream<Uint8Array> {
  const enc = new TextEncoder();
  return new ReadableStream<Uint8Array>({
    start(controller) {
      for (const e of events) controller.enqueue(enc.encode(`data: ${typeof e === 'string' ? e : JSON.stringify(e)}\n\n`));
      if (opts.done !== false) controller.enqueue(enc.encode('data: [DONE]\n\n'));
      controller.close();
    },
  });
}
