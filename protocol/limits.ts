/**
 * Size bounds of the wire contracts, apart from the zod schemas that enforce them: the edge's and
 * agents' schemas (api.ts, agent-api.ts, attestation.ts) and the SDK's zod/mini mirrors of them
 * (sdk/src/schemas.ts) read the same numbers, and this file imports nothing.
 *
 * @example
 * if (promptIds.length > MAX_PROMPT_TOKENS) throw new ApiError('context_length_exceeded', '...');
 */

/** Prompt token ids per job (edge -> agents, and a completion's `prompt` given as ids). */
export const MAX_PROMPT_TOKENS = 32_768;
/** Characters of one prompt or message text. */
export const MAX_PROMPT_CHARS = 200_000;
/** Messages per chat request. */
export const MAX_MESSAGES = 256;
/** Tool definitions per chat request, and the JSON size of each (they go into the prompt). */
export const MAX_TOOLS = 128;
export const MAX_TOOL_JSON_BYTES = 64 * 1024;
/** Upper bound for a TOPLOC-style hidden-state commitment per chunk (base64url). */
export const MAX_HIDDEN_COMMITMENT_CHARS = 65_536;
/**
 * Upper bound for a hop's TOPLOC commitment of the activations it sends (`outputTopLoc`, base64url):
 * at most 64 rows per chunk (protocol/output-commitment.ts), 6,840 characters at k = 16. Small
 * enough that a frame returning 15 hops' attestations stays far under its 256 KiB of metadata.
 */
export const MAX_OUTPUT_TOPLOC_CHARS = 8_192;
