/**
 * A collected answer of /v1/chat/completions or /v1/completions: every verified token, the stop
 * string scanned for, then one JSON body with usage, route and attestation (serve.ts).
 *
 * @example
 * return body.stream ? streamAnswer(job) : collectAnswer(job);
 */
import type { ServingJob } from './serving-job.js';
import { jobHeaders } from './job-headers.js';

export async function collectAnswer(job: ServingJob): Promise<Response> {
  const { input, gen, requestId, created, settle, usage, echo, consume, tail } = job;
  const { model } = input;
  let text = echo;
  let finish: 'stop' | 'length' = 'length';
  try {
    for await (const ev of gen.run()) {
      if (ev.type === 'done') {
        finish = ev.reason;
        text += tail();
        break;
      }
      const r = consume(ev.ids);
      text += r.text;
      if (r.stopped) {
        finish = 'stop';
        gen.finishEarly('stop');
        break;
      }
    }
  } finally {
    settle();
  }
  await gen.persisted();
  const extras = { usage: usage(), route: gen.routeSummary(), attestation: gen.attestationSummary() };
  const payload =
    input.kind === 'chat'
      ? {
          id: `chatcmpl-${gen.req.jobId}`,
          object: 'chat.completion',
          created,
          model: model.name,
          system_fingerprint: null,
          choices: [{ index: 0, message: { role: 'assistant', content: text, refusal: null }, finish_reason: finish, logprobs: null }],
          ...extras,
        }
      : {
          id: `cmpl-${gen.req.jobId}`,
          object: 'text_completion',
          created,
          model: model.name,
          system_fingerprint: null,
          choices: [{ index: 0, text, finish_reason: finish, logprobs: null }],
          ...extras,
        };
  return new Response(JSON.stringify(payload), { status: 200, headers: { 'content-type': 'application/json', ...jobHeaders(gen, requestId, false) } });
}
