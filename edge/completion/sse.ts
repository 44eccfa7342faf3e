/**
 * A streamed answer (SSE) of /v1/chat/completions or /v1/completions (serve.ts): the edge waits up
 * to `keepAliveMs` for the first token so that early failures are still real HTTP statuses; then
 * it commits a 200 and sends keep-alive comments until tokens flow; after the first byte an
 * error is an in-band `data: {"error": ...}` event.
 *
 * @example
 * return body.stream ? streamAnswer(job) : collectAnswer(job);
 */
import { SSE_DONE, sseComment, sseData } from '../../protocol/sse.js';
import type { GenerationEvent } from '../dispatch/generate.js';
import { errorEvent } from '../http/errors.js';
import type { ServingJob } from './serving-job.js';
import { jobHeaders } from './job-headers.js';

export async function streamAnswer(job: ServingJob): Promise<Response> {
  const { deps, input, gen, requestId, created, settle, usage, echo, consume, tail, abort } = job;
  const { body, model } = input;
  const includeUsage = body.stream_options?.include_usage === true;
  const id = input.kind === 'chat' ? `chatcmpl-${gen.req.jobId}` : `cmpl-${gen.req.jobId}`;
  const chunk = (content: string | null, finish: 'stop' | 'length' | null, extra: Record<string, unknown> = {}) =>
    input.kind === 'chat'
      ? {
          id,
          object: 'chat.completion.chunk',
          created,
          model: model.name,
          system_fingerprint: null,
          choices: [{ index: 0, delta: content === null ? {} : { content }, finish_reason: finish, logprobs: null }],
          ...(includeUsage ? { usage: null } : {}),
          ...extra,
        }
      : {
          id,
          object: 'text_completion',
          created,
          model: model.name,
          system_fingerprint: null,
          choices: [{ index: 0, text: content ?? '', finish_reason: finish, logprobs: null }],
          ...extra,
        };

  const iterator = gen.run()[Symbol.asyncIterator]();
  type Step = { ok: true; value: IteratorResult<GenerationEvent> } | { ok: false; error: unknown };
  const next = (): Promise<Step> => iterator.next().then((value) => ({ ok: true as const, value }), (error: unknown) => ({ ok: false as const, error }));
  let pending = next();
  // Early failures stay real HTTP statuses.
  const early = await Promise.race([pending, new Promise<null>((r) => setTimeout(() => r(null), deps.config.keepAliveMs))]);
  if (early && !early.ok) {
    settle();
    throw early.error;
  }
  const headers = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', ...jobHeaders(gen, requestId, true) };
  let closed = false;
  const stream = new ReadableStream<Uint8Array>({
    async start(controller) {
      const send = (bytes: Uint8Array) => {
        if (!closed) controller.enqueue(bytes);
      };
      try {
        if (echo) send(sseData(chunk(echo, null)));
        if (input.kind === 'chat') {
          const first = chunk(null, null);
          (first.choices[0] as { delta: Record<string, unknown> }).delta = { role: 'assistant', content: '' };
          send(sseData(first));
        }
        let finish: 'stop' | 'length' | null = null;
        while (!closed) {
          let step: Step | null = null;
          while (step === null && !closed) {
            step = await Promise.race([pending, new Promise<null>((r) => setTimeout(() => r(null), deps.config.keepAliveMs))]);
            if (step === null) send(sseComment('keep-alive'));
          }
          if (!step || closed) break;
          if (!step.ok) throw step.error;
          if (step.value.done) break;
          const ev = step.value.value;
          if (ev.type === 'done') {
            finish = ev.reason;
            const rest = tail();
            if (rest) send(sseData(chunk(rest, null)));
            break;
          }
          const r = consume(ev.ids);
          if (r.text) send(sseData(chunk(r.text, null)));
          if (r.stopped) {
            finish = 'stop';
            gen.finishEarly('stop');
            await iterator.return(undefined);
            break;
          }
          pending = next();
        }
        // Lets the generation finish its bookkeeping (a no-op when it already has).
        await iterator.return(undefined);
        await gen.persisted();
        if (closed) return;
        send(sseData(chunk(null, finish ?? 'length', { route: gen.routeSummary(), attestation: gen.attestationSummary() })));
        if (includeUsage) {
          const usageChunk = chunk(null, null, { usage: usage() });
          usageChunk.choices = [];
          send(sseData(usageChunk));
        }
        send(SSE_DONE);
      } catch (err) {
        deps.log({ level: 'warn', msg: 'stream failed after the first byte', requestId, jobId: gen.req.jobId, error: err instanceof Error ? err.message : String(err) });
        send(sseData(errorEvent(err)));
      } finally {
        settle();
        if (!closed) {
          closed = true;
          controller.close();
        }
      }
    },
    async cancel() {
      // The client went away: abort the upstream stream; Generation sends the signed cancel.
      closed = true;
      abort.abort();
      await iterator.return(undefined).catch(() => undefined);
    },
  });
  return new Response(stream, { status: 200, headers });
}
