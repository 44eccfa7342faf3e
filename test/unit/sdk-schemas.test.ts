/**
 * The SDK reads answers with zod/mini mirrors (sdk/src/schemas.ts) of the edge's zod schemas
 * (protocol/): they must accept and reject exactly the same bodies, with the same issues and the
 * same parsed data. Types are compared by `tsc` (sdk/src/schemas.ts `SchemaMirrorChecks`); the
 * checks with no type (bounds, patterns, refinements, strictness) are compared here, on valid
 * bodies and on every variant obtained by changing one node of them: its type, its value at and
 * around each bound the protocol uses, its absence, an extra key.
 */
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import * as api from '../../protocol/api.js';
import * as attestation from '../../protocol/attestation.js';
import * as ownerApi from '../../protocol/owner-api.js';
import * as ticket from '../../protocol/ticket.js';
import * as mini from '../../sdk/src/schemas.js';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json | undefined };

const HEX = 'ab'.repeat(32);
const KEY = 'A'.repeat(43);

const signedTicket = {
  ticket: {
    v: 1,
    jobId: 'job-1',
    modelId: HEX,
    dtype: 'float32',
    route: [
      { agentId: 'agent-a', layers: [0, 2], endpoint: 'http://agent-a.test/v1', publicKey: KEY },
      { agentId: 'agent-b', layers: [2, 4], endpoint: 'https://agent-b.test' },
    ],
    inputHash: HEX,
    promptTokens: 3,
    prefixTokens: 0,
    limits: { maxTokens: 16, deadline: 1_700_000_060_000 },
    sampling: { temperature: 0.7, topP: 0.9, topK: 40, seed: 7 },
    stopTokenIds: [2],
    chunking: { maxSteps: 8, maxDelayMs: 50 },
    nonce: 'n'.repeat(16),
    issuedAt: 1_700_000_000_000,
    expiresAt: 1_700_000_030_000,
    edgeKeyId: 'edge-1',
  },
  signature: 's'.repeat(86),
};

const signedAttestation = {
  att: {
    v: 1,
    ticketHash: HEX,
    jobId: 'job-1',
    agentId: 'agent-b',
    modelId: HEX,
    hop: 1,
    layers: [2, 4],
    steps: [0, 1],
    inputCommitment: HEX,
    outputCommitment: HEX,
    outputTokenIds: [17],
    hiddenCommitment: 'h'.repeat(32),
    prevHash: HEX,
    issuedAt: 1_700_000_000_100,
  },
  sig: 's'.repeat(86),
};

/** A hop before the last: commits to the activations it sent (outputTopLoc), not to tokens. */
const headAttestation = {
  att: { ...signedAttestation.att, agentId: 'agent-a', hop: 0, layers: [0, 2], outputTokenIds: undefined, hiddenCommitment: undefined, outputTopLoc: 'o'.repeat(40), prevHash: null },
  sig: 's'.repeat(86),
};
delete headAttestation.att.outputTokenIds;
delete headAttestation.att.hiddenCommitment;

const routeSummary = { hops: [{ agent_id: 'agent-a', pool_id: 'pool-1', region: 'eu-west', layers: [0, 4] }], price: 1.5, attempts: 1, region_met: true };
const attestationSummary = { job_id: 'job-1', verified: true, ticket_hash: HEX, model_id: HEX, chunks: 2, chain_head: HEX, url: '/v1/jobs/job-1/attestation' };
const usage = { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 };
const check = {
  status: 'upheld',
  verdict: { reason: 'sampling_mismatch', detail: 'step 3', step: 3 },
  blame: { attempt: 0, hop: 1, agent_id: 'agent-b' },
  dispute: { id: 'dsp-1', status: 'upheld' },
  refunded_micro_usd: 12,
};

/** [name, the protocol's schema, the SDK's mirror, valid bodies]. */
const PAIRS: [string, z.core.$ZodType, mini.ResponseSchema<unknown>, Json[]][] = [
  ['signed ticket', ticket.signedTicketSchema, mini.signedTicketSchema, [signedTicket]],
  ['signed attestation', attestation.signedAttestationSchema, mini.signedAttestationSchema, [signedAttestation, headAttestation]],
  ['chain verifier chunk', z.array(attestation.signedAttestationSchema).max(attestation.MAX_CHUNK_HOPS), mini.signedChunkSchema, [[headAttestation, signedAttestation]]],
  ['route preferences', api.routePreferencesSchema, mini.routePreferencesSchema, [{}, { sort: 'price', max_price: 2, max_latency_ms: 500, region: 'eu-west', allow_fallbacks: false }]],
  [
    'chat completion request',
    api.chatCompletionRequestSchema,
    mini.chatCompletionRequestSchema,
    [
      {
        model: 'tiny',
        messages: [
          { role: 'system', content: 'be brief', name: 'sys' },
          { role: 'user', content: [{ type: 'text', text: 'hi' }] },
          { role: 'assistant', content: null, tool_calls: [{ id: 'call-1', type: 'function', function: { name: 'get_weather', arguments: '{}' } }] },
          { role: 'tool', content: 'sunny', tool_call_id: 'call-1' },
        ],
        tools: [{ type: 'function', function: { name: 'get_weather', description: 'weather', parameters: { type: 'object' }, strict: true } }],
        max_tokens: 32,
        max_completion_tokens: null,
        temperature: 0.5,
        top_p: 1,
        top_k: 0,
        seed: 1,
        stop: ['\n', 'END'],
        user: 'u',
        n: 1,
        stream: true,
        stream_options: { include_usage: true },
        route: { sort: 'latency' },
      },
    ],
  ],
  ['completion request', api.completionRequestSchema, mini.completionRequestSchema, [{ model: 'tiny', prompt: 'Once', echo: true, stop: 'x' }, { model: 'tiny', prompt: [1, 2, 3] }, { model: 'tiny', prompt: [[1, 2]] }, { model: 'tiny', prompt: ['a'] }]],
  [
    'chat completion',
    api.chatCompletionSchema,
    mini.chatCompletionSchema,
    [
      {
        id: 'chatcmpl-1',
        object: 'chat.completion',
        created: 1,
        model: 'tiny',
        system_fingerprint: null,
        choices: [{ index: 0, message: { role: 'assistant', content: 'hi', refusal: null }, finish_reason: 'stop', logprobs: null }],
        usage,
        route: routeSummary,
        attestation: attestationSummary,
      },
    ],
  ],
  [
    'chat completion chunk',
    api.chatCompletionChunkSchema,
    mini.chatCompletionChunkSchema,
    [
      { id: 'c', object: 'chat.completion.chunk', created: 1, model: 'tiny', choices: [{ index: 0, delta: { role: 'assistant', content: 'h' }, finish_reason: null }] },
      { id: 'c', object: 'chat.completion.chunk', created: 1, model: 'tiny', choices: [{ index: 0, delta: {}, finish_reason: 'length', logprobs: null }], usage, route: routeSummary, attestation: attestationSummary },
    ],
  ],
  [
    'completion',
    api.completionSchema,
    mini.completionSchema,
    [{ id: 'cmpl-1', object: 'text_completion', created: 1, model: 'tiny', system_fingerprint: 'fp', choices: [{ index: 0, text: 'x', finish_reason: null, logprobs: null }], usage, route: routeSummary, attestation: attestationSummary }],
  ],
  [
    'model list',
    api.modelListSchema,
    mini.modelListSchema,
    [{ object: 'list', data: [{ id: 'tiny', object: 'model', created: 1, owned_by: 'x', manifest_hash: HEX, num_layers: 4, dtype: 'float32', agents: 2 }] }],
  ],
  [
    'pool list',
    api.poolListSchema,
    mini.poolListSchema,
    [
      {
        object: 'list',
        data: [
          {
            id: 'pool-1',
            name: 'p',
            region: 'eu-west',
            agents: [
              {
                id: 'agent-a',
                public_key: KEY,
                status: 'active',
                price: 1,
                reputation: 0.5,
                spans: [{ model_id: HEX, layers: [0, 4] }],
                last_heartbeat_at: null,
                queue_depth: 0,
                ttft_ms: null,
                per_token_ms: 12.5,
              },
            ],
          },
        ],
      },
    ],
  ],
  ['job check', api.jobCheckSchema, mini.jobCheckSchema, [check, { status: 'pending' }]],
  [
    'job attestation',
    api.jobAttestationSchema,
    mini.jobAttestationSchema,
    [
      {
        job_id: 'job-1',
        model_id: HEX,
        num_layers: 4,
        edge_key_id: 'edge-1',
        edge_public_key: KEY,
        attempts: [{ ticket: signedTicket, chunks: [[signedAttestation]], outcome: 'completed' }],
        token_ids: [17],
        check,
      },
    ],
  ],
  ['edge keys', ownerApi.edgeKeysSchema, mini.edgeKeysSchema, [{ keys: [{ id: 'edge-1', public_key: KEY }] }]],
];

/** Bounds the protocol's schemas use (lengths and values), each tried at, below and above. */
const BOUNDS = [1, 8, 15, 16, 43, 64, 128, 256, 512, 1000, 4096, 32_768, 60_000, 65_536, 200_000, 1_000_000, 2 ** 32 - 1];
const NUMBERS = [...new Set([0, -1, 0.5, 1.5, 2, 2.5, -0.1, 1e308, ...BOUNDS.flatMap((b) => [b - 1, b, b + 1])])];
const STRING_LENGTHS = [0, 1, 15, 16, 17, 42, 43, 44, 63, 64, 65, 127, 128, 129, 255, 256, 257, 511, 512, 513, 8_192, 8_193, 65_536, 65_537, 200_000, 200_001];
const ARRAY_LENGTHS = [0, 1, 2, 8, 9, 15, 16, 17, 64, 65, 128, 129, 256, 257];
const BIG_ARRAY_LENGTHS = [4096, 4097, 32_768, 32_769];
const STRINGS = ['', 'x', 'not a url', 'http://h.test', 'ftp://h', HEX.toUpperCase(), 'eu-west', 'stop', 'length', 'assistant', 'user', 'tool', 'function', 'text', 'list', 'fail', 'float16', 'bad name!'];
const OTHER_TYPES: Json[] = [null, true, 'x', 1, {}, []];

function repeatTo(s: string, n: number): string {
  if (s === '') return 'a'.repeat(n);
  return s.repeat(Math.ceil(n / s.length)).slice(0, n);
}

/** Every body that differs from `value` in one node. */
function* variants(value: Json): Generator<Json> {
  for (const other of OTHER_TYPES) yield other;
  if (typeof value === 'number') for (const n of NUMBERS) yield n;
  else if (typeof value === 'string') {
    for (const n of STRING_LENGTHS) yield repeatTo(value, n);
    yield* STRINGS;
  } else if (Array.isArray(value)) {
    const first = value[0];
    if (first !== undefined) {
      const lengths = typeof first === 'object' && first !== null ? ARRAY_LENGTHS : [...ARRAY_LENGTHS, ...BIG_ARRAY_LENGTHS];
      for (const n of lengths) yield Array.from({ length: n }, (_, i) => value[i % value.length]!);
      yield [...value].reverse();
    }
    for (let i = 0; i < value.length; i++) for (const v of variants(value[i]!)) yield value.map((x, j) => (j === i ? v : x));
  } else if (value !== null && typeof value === 'object') {
    yield { ...value, extra_key: 1 };
    for (const key of Object.keys(value)) {
      const { [key]: _dropped, ...rest } = value;
      yield rest;
      for (const v of variants(value[key]!)) yield { ...value, [key]: v };
    }
  }
}

function outcome(parsed: { success: true; data: unknown } | { success: false; error: object }): unknown {
  return parsed.success ? { ok: parsed.data } : { issues: (parsed.error as { issues?: unknown }).issues };
}

describe('the SDK schemas mirror the protocol schemas', () => {
  for (const [name, classic, sdk, bodies] of PAIRS) {
    it(`${name}: same verdict, issues and data on valid bodies and every one-node variant`, () => {
      let tried = 0;
      let rejected = 0;
      for (const body of bodies) {
        expect(z.safeParse(classic, body).success).toBe(true);
        for (const input of [body, ...variants(body)]) {
          const a = outcome(z.safeParse(classic, input));
          const b = outcome(sdk.safeParse(input, mini.PARSE_CONTEXT));
          if (JSON.stringify(a) !== JSON.stringify(b)) expect({ input, sdk: b }).toEqual({ input, sdk: a });
          tried++;
          if ('issues' in (a as object)) rejected++;
        }
      }
      // The variants reach the schemas' checks: many fail, some pass.
      expect(rejected).toBeGreaterThan(tried / 10);
      expect(rejected).toBeLessThan(tried);
    });
  }

  it('refinements: layer ranges, tool sizes, tool calls on non-assistant messages', () => {
    const cases: [z.core.$ZodType, mini.ResponseSchema<unknown>, Json][] = [
      [ticket.signedTicketSchema, mini.signedTicketSchema, { ...signedTicket, ticket: { ...signedTicket.ticket, route: [{ agentId: 'a', layers: [2, 2], endpoint: 'http://a.test' }] } }],
      [ticket.signedTicketSchema, mini.signedTicketSchema, { ...signedTicket, ticket: { ...signedTicket.ticket, route: [{ agentId: 'a', layers: [3, 1], endpoint: 'http://a.test' }] } }],
      [api.chatCompletionRequestSchema, mini.chatCompletionRequestSchema, { model: 'm', messages: [{ role: 'user', content: 'x', tool_calls: [] }] }],
      [
        api.chatCompletionRequestSchema,
        mini.chatCompletionRequestSchema,
        { model: 'm', messages: [{ role: 'user', content: 'x' }], tools: [{ type: 'function', function: { name: 'f', description: 'd'.repeat(api.MAX_TOOL_JSON_BYTES) } }] },
      ],
    ];
    for (const [classic, sdk, input] of cases) {
      const a = z.safeParse(classic, input);
      expect(a.success).toBe(false);
      expect(outcome(sdk.safeParse(input, mini.PARSE_CONTEXT))).toEqual(outcome(a));
    }
  });

  it('the SDK parses with English messages whatever zod’s global locale, and leaves it alone', () => {
    const saved = z.config().localeError;
    z.config({ localeError: () => 'message of the page' });
    try {
      const parsed = mini.modelListSchema.safeParse({ object: 'list', data: [{ id: 1 }] }, mini.PARSE_CONTEXT);
      expect(parsed.success).toBe(false);
      expect(parsed.error?.message).toContain('Invalid input: expected string, received number');
      expect(z.config().localeError?.({} as never)).toBe('message of the page');
    } finally {
      z.config({ localeError: saved });
    }
  });
});
