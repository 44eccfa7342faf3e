/**
 * `client.chat.completions`: chat completions, plain or streamed, verified when asked.
 */
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionCreateParams, ChatCompletionCreateParamsNonStreaming, ChatCompletionCreateParamsStreaming, RequestOptions } from '../types.js';
import { chatCompletionChunkSchema, chatCompletionSchema } from '../schemas.js';
import type { LayerNet, RequestSpec, Verified } from '../client.js';
import { Stream } from '../stream.js';
import { jobIdOf, requireJobId } from './job-id.js';

export class ChatCompletions {
  constructor(private readonly client: LayerNet) {}

  /**
   * Creates a chat completion; with `stream: true`, a {@link Stream} of chunks.
   *
   * @example
   * const stream = await client.chat.completions.create({ model: 'layernet-llama-tiny-fp32-seed0', messages, stream: true, stream_options: { include_usage: true } });
   * console.log(await stream.toText(), stream.finalUsage);
   */
  create(body: ChatCompletionCreateParamsStreaming, options?: RequestOptions): Promise<Stream<ChatCompletionChunk>>;
  create(body: ChatCompletionCreateParamsNonStreaming, options?: RequestOptions): Promise<Verified<ChatCompletion>>;
  create(body: ChatCompletionCreateParams, options?: RequestOptions): Promise<Stream<ChatCompletionChunk> | Verified<ChatCompletion>>;
  async create(body: ChatCompletionCreateParams, options: RequestOptions = {}): Promise<Stream<ChatCompletionChunk> | Verified<ChatCompletion>> {
    const client = this.client;
    const spec: RequestSpec = { method: 'POST', path: '/v1/chat/completions', body: client.withRoute(body, options) };
    if (body.stream) {
      return client.requestStream(spec, options, chatCompletionChunkSchema, (c) => c.choices.map((ch) => ch.delta.content ?? '').join(''), (s) => ({
        jobId: requireJobId(s.jobId),
        summary: s.attestation,
        route: s.route,
        usage: s.finalUsage,
        text: s.text,
      }));
    }
    const completion: Verified<ChatCompletion> = await client.requestJson(spec, options, chatCompletionSchema);
    const verify = client.verifyOptions(options);
    if (verify) {
      completion.verification = await client.verifyJob(
        {
          jobId: requireJobId(jobIdOf(completion)),
          summary: completion.attestation,
          route: completion.route,
          usage: completion.usage,
          text: completion.choices[0]?.message.content ?? '',
        },
        verify,
      );
    }
    return completion;
  }
}
