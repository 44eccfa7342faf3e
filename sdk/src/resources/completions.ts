/**
 * `client.completions`: text completions, plain or streamed, verified when asked.
 */
import type { Completion, CompletionCreateParams, CompletionCreateParamsNonStreaming, CompletionCreateParamsStreaming, RequestOptions } from '../types.js';
import { completionSchema } from '../schemas.js';
import type { LayerNet, RequestSpec, Verified } from '../client.js';
import { Stream } from '../stream.js';
import { jobIdOf, requireJobId } from './job-id.js';

export class Completions {
  constructor(private readonly client: LayerNet) {}

  /**
   * Creates a text completion; with `stream: true`, a {@link Stream} of completion chunks.
   *
   * @example
   * const c = await client.completions.create({ model: 'layernet-llama-tiny-fp32-seed0', prompt: 'Once upon a time', max_tokens: 16 });
   */
  create(body: CompletionCreateParamsStreaming, options?: RequestOptions): Promise<Stream<Completion>>;
  create(body: CompletionCreateParamsNonStreaming, options?: RequestOptions): Promise<Verified<Completion>>;
  create(body: CompletionCreateParams, options?: RequestOptions): Promise<Stream<Completion> | Verified<Completion>>;
  async create(body: CompletionCreateParams, options: RequestOptions = {}): Promise<Stream<Completion> | Verified<Completion>> {
    const client = this.client;
    const spec: RequestSpec = { method: 'POST', path: '/v1/completions', body: client.withRoute(body, options) };
    if (body.stream) {
      return client.requestStream(spec, options, completionSchema, (c) => c.choices.map((ch) => ch.text).join(''), (s) => ({
        jobId: requireJobId(s.jobId),
        summary: s.attestation,
        route: s.route,
        usage: s.finalUsage,
        text: s.text,
      }));
    }
    const completion: Verified<Completion> = await client.requestJson(spec, options, completionSchema);
    const verify = client.verifyOptions(options);
    if (verify) {
      completion.verification = await client.verifyJob(
        {
          jobId: requireJobId(jobIdOf(completion)),
          summary: completion.attestation ?? null,
          route: completion.route ?? null,
          usage: completion.usage ?? null,
          // With echo the text starts with the prompt, which the chain does not attest.
          text: body.echo ? null : (completion.choices[0]?.text ?? ''),
        },
        verify,
      );
    }
    return completion;
  }
}
