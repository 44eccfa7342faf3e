/**
 * @layernet/sdk: the TypeScript client of the LayerNet edge (OpenAI-compatible, with route
 * preferences and client-side attestation checks). Works in Node 20+, Workers and browsers.
 *
 * @example
 * import LayerNet from '@layernet/sdk';
 * const client = new LayerNet({ baseURL: 'http://127.0.0.1:8787', apiKey: process.env.LAYERNET_API_KEY, verify: true });
 * const stream = await client.chat.completions.create({ model: 'layernet-llama-tiny-fp32-seed0', messages: [{ role: 'user', content: 'hi' }], stream: true });
 * for await (const chunk of stream) console.log(chunk.choices[0]?.delta.content);
 * console.log(stream.route, stream.verification);
 */
export { LayerNet, SDK_VERSION, DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT_MS } from './client.js';
export type { ClientOptions, Fetch, Verified } from './client.js';
export { ChatCompletions } from './resources/chat.js';
export { Completions } from './resources/completions.js';
export { Models } from './resources/models.js';
export { Pools, type PoolListParams } from './resources/pools.js';
export { Jobs, type JobCheckParams } from './resources/jobs.js';
export { Stream, collectText } from './stream.js';
export { JobVerifier } from './verify.js';
export type { JobVerifierDeps, VerifyInput } from './verify.js';
export {
  LayerNetError,
  APIError,
  BadRequestError,
  AuthenticationError,
  PermissionDeniedError,
  NotFoundError,
  RequestTimeoutError,
  ConflictError,
  PayloadTooLargeError,
  UnprocessableEntityError,
  RateLimitError,
  InternalServerError,
  BadGatewayError,
  ServiceUnavailableError,
  GatewayTimeoutError,
  APIConnectionError,
  APIConnectionTimeoutError,
  APIUserAbortError,
  APIResponseValidationError,
  AttestationError,
  JobFoundBadError,
  isJobFoundBad,
  errorClassForStatus,
  parseRetryAfterMs,
} from './errors.js';
export type { APIErrorBody, AttestationFailure } from './errors.js';
export { retryDelayMs, isRetryableStatus, INITIAL_RETRY_DELAY_MS, MAX_RETRY_DELAY_MS } from './retry.js';
export type * from './types.js';
export {
  chatCompletionRequestSchema,
  completionRequestSchema,
  chatCompletionSchema,
  chatCompletionChunkSchema,
  completionSchema,
  routePreferencesSchema,
  jobAttestationSchema,
  jobCheckSchema,
} from './schemas.js';

import { LayerNet } from './client.js';
export default LayerNet;
