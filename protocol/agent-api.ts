/**
 * Contracts between the edge and agents, and between agents (metadata of binary frames).
 *
 * Edge -> head agent: `POST /v1/jobs` with a JSON `JobRequest`; the response is NDJSON, one
 * `JobEvent` per line: `chunk` (one per generated token, with every hop's attestation), then
 * `done` or `error`. Cancel: `POST /v1/jobs/:jobId/cancel` with a `CancelRequest` signed by the edge.
 *
 * Agent -> agent: `POST /v1/spans/forward`, body and response are binary frames (frame.ts).
 * The request frame's meta is a `ForwardMeta`, the response frame's a `ForwardResultMeta`.
 */
import { z } from 'zod';
import { signedTicketSchema } from './ticket.js';
import { signedAttestationSchema } from './attestation.js';
import { MAX_PROMPT_TOKENS } from './limits.js';
import { forwardEvidenceSchema } from './forward-evidence.js';

export { MAX_PROMPT_TOKENS };

export const jobRequestSchema = z.object({
  signedTicket: signedTicketSchema,
  /** Prompt token ids after the chat template; hash(promptIds ++ prefixIds) = ticket.inputHash. */
  promptIds: z.array(z.number().int().nonnegative()).min(1).max(MAX_PROMPT_TOKENS),
  /** Tokens already generated in an earlier attempt (resume). */
  prefixIds: z.array(z.number().int().nonnegative()).max(MAX_PROMPT_TOKENS),
});
export type JobRequest = z.infer<typeof jobRequestSchema>;

export const jobEventSchema = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('chunk'),
    steps: z.tuple([z.number().int().nonnegative(), z.number().int().nonnegative()]),
    tokenIds: z.array(z.number().int().nonnegative()).min(1).max(4096),
    attestations: z.array(signedAttestationSchema).min(1).max(16),
  }),
  z.object({ type: z.literal('done'), finishReason: z.enum(['stop', 'length', 'cancelled']) }),
  z.object({
    type: z.literal('error'),
    code: z.string().max(64),
    message: z.string().max(2048),
    /** Hop (agent) that failed, when known: for a refused forward, the hop that refused. */
    agentId: z.string().max(64).optional(),
    /**
     * A refused forward's proof that the hop before the refusing one sent bytes other than it
     * attested (protocol/forward-evidence.ts), checked by the edge before it blames that hop.
     * Evidence of another shape is dropped, not the event: it then proves nothing, as if absent.
     */
    evidence: forwardEvidenceSchema.optional().catch(undefined),
  }),
]);
export type JobEvent = z.infer<typeof jobEventSchema>;
/** Longest NDJSON line an edge accepts from an agent. */
export const MAX_JOB_EVENT_BYTES = 256 * 1024;

export const cancelRequestSchema = z.object({
  jobId: z.string().min(1).max(64),
  ticketHash: z.string().regex(/^[0-9a-f]{64}$/),
  issuedAt: z.number().int().positive(),
  /** Edge signature over `layernet.cancel/1\n{jobId}\n{ticketHash}\n{issuedAt}`. */
  signature: z.string().max(128),
});
export type CancelRequest = z.infer<typeof cancelRequestSchema>;
export const cancelMessage = (r: Omit<CancelRequest, 'signature'>) => `layernet.cancel/1\n${r.jobId}\n${r.ticketHash}\n${r.issuedAt}`;

/** Meta of a `forward` frame from hop k-1 to hop k. */
const jobRefSchema = z.object({ jobId: z.string().min(1).max(64), ticketHash: z.string().regex(/^[0-9a-f]{64}$/) });

export const forwardMetaSchema = z
  .object({
    /** The signed ticket: required on the opening frame; later frames may name the job by `job` alone. */
    signedTicket: signedTicketSchema.optional(),
    /** The job and the hash of the ticket its session was opened with (frames after the first). */
    job: jobRefSchema.optional(),
    hop: z.number().int().positive().max(15),
    /** The generation step this frame computes, [s, s + 1). */
    steps: z.tuple([z.number().int().nonnegative(), z.number().int().nonnegative()]),
    /**
     * First step of the attestation chunk this step belongs to (default: this step). Every hop
     * keeps what it received and sent since then and signs it all when the chunk is sealed.
     */
    chunkFrom: z.number().int().nonnegative().optional(),
    /**
     * Whether this step closes the chunk [chunkFrom, steps[1]) (default true: one chunk per step).
     * A sealing frame carries hop k-1's attestation of the whole chunk (`prev`, `prevHash`); an
     * open one carries neither and is answered with the token but no attestation.
     */
    seal: z.boolean().optional(),
    /** Hash of hop k-1's attestation of the chunk (hop k binds it as prevHash); sealing frames only. */
    prevHash: z
      .string()
      .regex(/^[0-9a-f]{64}$/)
      .optional(),
    /** Whether this is the session's first (prefill) frame: it opens the KV session. */
    open: z.boolean(),
    /**
     * Hop k-1's signed attestation of the chunk: hash(prev.att) = prevHash and
     * prev.att.outputCommitment = sha256 of every payload of the chunk, concatenated in step
     * order. Hop k refuses (`bad_input`, nothing signed) a sealing frame whose payloads or prevHash
     * it does not vouch for, or whose signature does not verify against the key the ticket gives
     * for hop k-1, so activations changed on the link make hop k refuse instead of signing an
     * attestation that would blame it. The sending hop also refuses to relay a next hop's
     * attestation that binds other input or another prevHash than it sent.
     */
    prev: signedAttestationSchema.optional(),
    /**
     * Sealing frames: hop k-1's signature over `forwardMessage` (protocol/forward-evidence.ts) with
     * the SHA-256 of every payload of the chunk as it sent them. Hop k checks it only when it
     * refuses the bytes: verified over what it received, it makes the refusal evidence against
     * hop k-1 (`ForwardEvidence`); missing or not verifying, nobody is provably at fault.
     * Optional: older senders do not write it.
     */
    senderSig: z.string().max(128).optional(),
  })
  .refine((m) => m.signedTicket !== undefined || (m.job !== undefined && !m.open), { message: 'the opening frame carries the signed ticket, later ones the ticket or a job reference', path: ['signedTicket'] })
  .refine((m) => m.seal === false || m.prevHash !== undefined, { message: 'a sealing frame carries prevHash', path: ['prevHash'] })
  .refine((m) => m.chunkFrom === undefined || m.chunkFrom <= m.steps[0], { message: 'chunkFrom is after the step', path: ['chunkFrom'] });
export type ForwardMeta = z.infer<typeof forwardMetaSchema>;

/**
 * Meta of a `seal` frame: closes the open chunk [chunk[0], chunk[1]) without computing a step
 * (the head learned after the last step that the job ends there, e.g. on a stop token). Answered
 * like a sealing forward frame, with no token ids.
 */
export const sealMetaSchema = z.object({
  job: jobRefSchema,
  hop: z.number().int().positive().max(15),
  chunk: z.tuple([z.number().int().nonnegative(), z.number().int().nonnegative()]).refine(([a, b]) => a < b, 'a chunk is [from, to) with from < to'),
  prevHash: z.string().regex(/^[0-9a-f]{64}$/),
  prev: signedAttestationSchema,
  /** As in ForwardMeta: the sender's signature over the chunk's payloads it sent. */
  senderSig: z.string().max(128).optional(),
});
export type SealMeta = z.infer<typeof sealMetaSchema>;

/**
 * Meta of the response: the attestations of this hop and every hop after it, in order (none for
 * a step that does not seal its chunk), and the token sampled at this step (none for a seal frame).
 */
export const forwardResultMetaSchema = z.object({
  attestations: z.array(signedAttestationSchema).max(15),
  tokenIds: z.array(z.number().int().nonnegative()).max(4096),
});
export type ForwardResultMeta = z.infer<typeof forwardResultMetaSchema>;

export const errorFrameMetaSchema = z.object({
  code: z.string().max(64),
  message: z.string().max(2048),
  agentId: z.string().max(64).optional(),
  /** As on a job's error event: relayed up the chain to the head, which hands it to the edge. */
  evidence: forwardEvidenceSchema.optional().catch(undefined),
});

/** Meta of a `close` frame: the job is over, free its session here and on every later hop. */
export const closeMetaSchema = z.object({
  jobId: z.string().min(1).max(64),
  ticketHash: z.string().regex(/^[0-9a-f]{64}$/),
  hop: z.number().int().positive().max(15),
});
export type CloseMeta = z.infer<typeof closeMetaSchema>;

/**
 * `POST /v1/checks/inputs` (edge -> any hop of a finished job): what that hop committed to, so a
 * re-execution check can re-run its span. Signed by the edge over `checkInputsMessage`.
 */
export const checkInputsRequestSchema = z.object({
  jobId: z.string().min(1).max(64),
  hop: z.number().int().nonnegative().max(15),
  issuedAt: z.number().int().positive(),
  /** Edge signature over `layernet.check-inputs/1\n{jobId}\n{hop}\n{issuedAt}`. */
  signature: z.string().max(128),
});
export type CheckInputsRequest = z.infer<typeof checkInputsRequestSchema>;
/**
 * What the head signs to open its tap on the last hop (pool-agent/server/link.ts): only the hop
 * the ticket names as the head may take a job's tokens there.
 */
export const tapMessage = (jobId: string, ticketHash: string) => `layernet.tap/1\n${jobId}\n${ticketHash}`;
export const checkInputsMessage = (r: Omit<CheckInputsRequest, 'signature'>) => `layernet.check-inputs/1\n${r.jobId}\n${r.hop}\n${r.issuedAt}`;

export const checkInputsResponseSchema = z.object({
  jobId: z.string(),
  hop: z.number().int().nonnegative(),
  dtype: z.enum(['float32', 'float16']),
  hiddenSize: z.number().int().positive(),
  /** One per chunk in step order; tensors are raw little-endian bytes, base64url, [rows, hiddenSize]. */
  chunks: z.array(
    z.object({
      steps: z.tuple([z.number().int().nonnegative(), z.number().int().nonnegative()]),
      inputTokenIds: z.array(z.number().int().nonnegative()).optional(),
      input: z.string().optional(),
      output: z.string().optional(),
    }),
  ),
});
export type CheckInputsResponse = z.infer<typeof checkInputsResponseSchema>;
