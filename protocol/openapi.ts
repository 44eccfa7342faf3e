/**
 * The OpenAPI 3.1 document of the edge, generated from the same zod schemas the edge validates
 * with and the SDK types itself from (request bodies as their input side, responses as their
 * output side), plus a small self-contained docs page that renders it (no CDN).
 *
 * @example
 * app.get('/openapi.json', (c) => c.json(buildOpenApiDocument({ serverUrl: new URL(c.req.url).origin })));
 * app.get('/docs', (c) => c.html(openApiDocsHtml('/openapi.json')));
 */
import { z } from 'zod';
import {
  attestationSummarySchema,
  chatCompletionChunkSchema,
  chatCompletionRequestSchema,
  chatCompletionSchema,
  completionRequestSchema,
  completionSchema,
  jobAttestationSchema,
  jobCheckSchema,
  modelListSchema,
  poolListSchema,
  routePreferencesSchema,
  routeSummarySchema,
} from './api.js';
import {
  agentRegistrationSchema,
  createPoolSchema,
  edgeKeysSchema,
  heartbeatSchema,
  poolSchema,
  publishModelSchema,
  creditStakeSchema,
  publishedModelSchema,
  registerAgentSchema,
  updateAgentSchema,
  ownerModelSchema,
  modelFileUploadSchema,
  modelFilePathSchema,
} from './owner-api.js';
import { ERROR_CODES, errorEnvelopeSchema } from './errors.js';
import { signedTicketSchema } from './ticket.js';
import { signedAttestationSchema } from './attestation.js';

export const OPENAPI_VERSION = '3.1.0';
const API_VERSION = '0.1.0';

/** Owner-route answers the edge builds inline (no protocol schema of their own yet). */
const ownerAgentSchema = z.object({
  id: z.string(),
  pool_id: z.string(),
  endpoint: z.string(),
  public_key: z.string(),
  status: z.string(),
  price: z.number(),
  reputation: z.number(),
  spans: z.array(z.object({ model_id: z.string(), layers: z.tuple([z.number().int(), z.number().int()]) })),
  last_heartbeat_at: z.string().nullable(),
});
const ownerPoolListSchema = z.object({ object: z.literal('list'), data: z.array(poolSchema) });
const deletedAgentSchema = z.object({ id: z.string(), deleted: z.literal(true) });
const heartbeatAckSchema = z.object({ ok: z.literal(true), status: z.string(), next_heartbeat_ms: z.number().int() });
const healthSchema = z.object({ ok: z.literal(true), edge_key_id: z.string() });

/** Request bodies: documented as what a client may send (defaults optional). */
const INPUT_SCHEMAS = {
  ChatCompletionRequest: chatCompletionRequestSchema,
  CompletionRequest: completionRequestSchema,
  RoutePreferences: routePreferencesSchema,
  CreatePoolRequest: createPoolSchema,
  RegisterAgentRequest: registerAgentSchema,
  UpdateAgentRequest: updateAgentSchema,
  HeartbeatRequest: heartbeatSchema,
  PublishModelRequest: publishModelSchema,
  CreditStakeRequest: creditStakeSchema,
} as const;

/** Response bodies: documented as what the edge sends. */
const OUTPUT_SCHEMAS = {
  ChatCompletion: chatCompletionSchema,
  ChatCompletionChunk: chatCompletionChunkSchema,
  Completion: completionSchema,
  RouteSummary: routeSummarySchema,
  AttestationSummary: attestationSummarySchema,
  ModelList: modelListSchema,
  PoolList: poolListSchema,
  JobAttestation: jobAttestationSchema,
  JobCheck: jobCheckSchema,
  SignedTicket: signedTicketSchema,
  SignedAttestation: signedAttestationSchema,
  EdgeKeys: edgeKeysSchema,
  Pool: poolSchema,
  OwnerPoolList: ownerPoolListSchema,
  AgentRegistration: agentRegistrationSchema,
  OwnerAgent: ownerAgentSchema,
  DeletedAgent: deletedAgentSchema,
  PublishedModel: publishedModelSchema,
  OwnerModel: ownerModelSchema,
  ModelFileUpload: modelFileUploadSchema,
  HeartbeatAck: heartbeatAckSchema,
  Health: healthSchema,
  ErrorEnvelope: errorEnvelopeSchema,
} as const;

type JsonObject = Record<string, unknown>;
const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });

/** One registry per side, so shared sub-schemas become `$ref`s between components. */
function componentSchemas(schemas: Record<string, z.ZodType>, io: 'input' | 'output'): Record<string, JsonObject> {
  const registry = z.registry<{ id: string }>();
  for (const [id, schema] of Object.entries(schemas)) registry.add(schema, { id });
  const out = z.toJSONSchema(registry, {
    target: 'draft-2020-12',
    io,
    // Refinements and transforms have no JSON Schema form: they are documented as their base type.
    unrepresentable: 'any',
    uri: (id) => `#/components/schemas/${id}`,
  }) as { schemas: Record<string, JsonObject> };
  const result: Record<string, JsonObject> = {};
  for (const [id, schema] of Object.entries(out.schemas)) {
    const { $schema: _s, $id: _i, ...rest } = schema;
    result[id] = rest;
  }
  return result;
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Invalid request.',
  401: 'Missing or invalid credentials.',
  403: 'The key lacks the scope, or its budget is spent.',
  404: 'Not found.',
  408: 'The request body did not arrive in time.',
  409: 'Conflict with the registry state.',
  413: 'Body too large.',
  415: 'Unsupported media type.',
  429: 'Rate or capacity limit; see `retry-after`.',
  500: 'Internal error.',
  502: 'Every route failed, or an agent attestation failed.',
  503: 'No route meets the constraints; see `retry-after`.',
  504: 'The agents did not answer in time.',
};

/** One description per status, listing the error codes of the shared table that map to it. */
function errorDescriptions(): Record<string, string> {
  const byStatus = new Map<number, string[]>();
  for (const [code, { status }] of Object.entries(ERROR_CODES)) byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  const out: Record<string, string> = {};
  for (const [status, codes] of [...byStatus].sort((a, b) => a[0] - b[0])) {
    out[String(status)] = `${STATUS_TEXT[status] ?? 'Error.'} Codes: ${codes.map((c) => `\`${c}\``).join(', ')}.`;
  }
  return out;
}

function errors(...codes: string[]): Record<string, JsonObject> {
  const out: Record<string, JsonObject> = {};
  for (const code of codes) out[code] = { $ref: `#/components/responses/Error${code}` };
  return out;
}

const jsonBody = (schema: string, description?: string) => ({
  required: true,
  ...(description ? { description } : {}),
  content: { 'application/json': { schema: ref(schema) } },
});

const jsonAnswer = (schema: string, description: string, headers?: JsonObject) => ({
  description,
  ...(headers ? { headers } : {}),
  content: { 'application/json': { schema: ref(schema) } },
});

const JOB_HEADERS = {
  'x-request-id': { $ref: '#/components/headers/RequestId' },
  'x-layernet-job-id': { description: 'The job id (also `attestation.job_id`).', schema: { type: 'string' } },
  'x-layernet-route': {
    description: 'Agent ids of the route that served the answer, in hop order, comma-separated (on a stream: the route when the headers were sent; a failover may change it, as the last event\'s `route` says).',
    schema: { type: 'string' },
  },
  'x-layernet-attestation': {
    description:
      '`verified; chunks=N; chain-head=<hash>; url=<path>` once tokens were verified, else `pending; url=<path>`. ' +
      'On a stream it is sent before the tokens and ends with `; provisional`: it counts the chunks verified when the headers ' +
      'were sent, and the `attestation` of the last event (with `finish_reason`) is authoritative.',
    schema: { type: 'string' },
  },
  'x-layernet-region-met': {
    description:
      'Only when the request asked for `route.region`: `true` when that region served the answer, `false` when another region ' +
      'did (`allow_fallbacks`); as `route.region_met`. On a stream, as of the headers; the last event\'s `route` is authoritative.',
    schema: { type: 'string', enum: ['true', 'false'] },
  },
};

function completionOperation(kind: 'chat' | 'text'): JsonObject {
  const request = kind === 'chat' ? 'ChatCompletionRequest' : 'CompletionRequest';
  const answer = kind === 'chat' ? 'ChatCompletion' : 'Completion';
  const chunk = kind === 'chat' ? 'ChatCompletionChunk' : 'Completion';
  return {
    operationId: kind === 'chat' ? 'createChatCompletion' : 'createCompletion',
    tags: ['inference'],
    summary: kind === 'chat' ? 'Create a chat completion' : 'Create a text completion',
    description:
      'OpenAI-compatible, with the `route` extension: route preferences in the request (sort by latency, price or both; ' +
      'price and latency caps; region; fallbacks), and `route` (the hops that computed the answer) plus `attestation` ' +
      '(summary of the verified attestation chain; the full chain is at `attestation.url`) in the answer. ' +
      'Every token was verified by the edge against its agents\' signed attestations before it was sent.',
    requestBody: jsonBody(request),
    responses: {
      '200': {
        description:
          'With `stream` false: the completion. With `stream: true`: server-sent events, each `data: <' + chunk + ' JSON>`; ' +
          'the final chunk carries `finish_reason`, `route` and `attestation`; with `stream_options.include_usage` a last chunk ' +
          'carries `usage`; the stream ends with `data: [DONE]`. Comment lines (`: keep-alive`) may arrive while waiting. ' +
          'An error after the stream started is an in-band event `data: {"error": {...}}` (the ErrorEnvelope) and ends the stream.',
        headers: JOB_HEADERS,
        content: {
          'application/json': { schema: ref(answer) },
          'text/event-stream': {
            schema: { type: 'string', description: `SSE: data: ${chunk} events, then data: [DONE]` },
            'x-sse-event-schema': ref(chunk),
            'x-sse-error-schema': ref('ErrorEnvelope'),
          },
        },
      },
      ...errors('400', '401', '403', '404', '408', '413', '415', '429', '500', '502', '503', '504'),
    },
  };
}

function paths(): Record<string, JsonObject> {
  const pathId = (description: string) => ({ name: 'id', in: 'path', required: true, description, schema: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,64}$' } });
  const modelParam = { name: 'id', in: 'path', required: true, description: 'Model id (manifest hash) or name.', schema: { type: 'string', minLength: 1, maxLength: 128 } };
  return {
    '/v1/chat/completions': { post: completionOperation('chat') },
    '/v1/completions': { post: completionOperation('text') },
    '/v1/models': {
      get: {
        operationId: 'listModels',
        tags: ['inference'],
        summary: 'List models',
        description: 'Published models, with the number of live agents serving some span of each. `manifest_hash` is the model id in tickets and attestations.',
        responses: { '200': jsonAnswer('ModelList', 'The models.'), ...errors('401', '403', '500') },
      },
    },
    '/v1/pools': {
      get: {
        operationId: 'listPools',
        tags: ['registry'],
        summary: 'List pools and their agents (public)',
        description: 'The public registry view: pools, their agents, each agent\'s registered Ed25519 public key (to verify attestations yourself), prices, reputation and live figures. Paged by pool id.',
        security: [],
        parameters: [
          { name: 'region', in: 'query', required: false, schema: { type: 'string', pattern: '^[a-z0-9-]{2,32}$' } },
          { name: 'limit', in: 'query', required: false, schema: { type: 'integer', minimum: 1, maximum: 100, default: 50 } },
          { name: 'after', in: 'query', required: false, description: 'Cursor: the last pool id of the previous page.', schema: { type: 'string' } },
        ],
        responses: { '200': jsonAnswer('PoolList', 'One page of pools.'), ...errors('500') },
      },
    },
    '/v1/jobs/{id}/attestation': {
      get: {
        operationId: 'getJobAttestation',
        tags: ['verification'],
        summary: 'Full attestation chain of a job',
        description:
          'Everything needed to re-verify an answer without trusting the edge: per attempt (failover), the signed ticket and every chunk of signed attestations; the token ids handed to the client; the edge key that signed the tickets. ' +
          '`check` says what the re-execution checks found: `unchecked`, `pending` (a verdict may still come, up to ~30 s after the job), `pass`, `inconclusive`, `fail` (with the failing verdict and, when known, the blamed hop), or how its dispute ended (`upheld`, `dismissed`, `voided`). ' +
          'A job found bad (`fail` naming a hop, or `upheld`) is not charged: `refunded_micro_usd` is what went back to the key\'s spend, once. Only the caller\'s own jobs.',
        parameters: [pathId('The job id (`attestation.job_id`).')],
        responses: { '200': jsonAnswer('JobAttestation', 'The chain.'), ...errors('401', '403', '404', '500') },
      },
    },
    '/v1/edge/keys': {
      get: {
        operationId: 'listEdgeKeys',
        tags: ['verification'],
        summary: 'The edge\'s ticket-signing public keys (public)',
        security: [],
        responses: { '200': jsonAnswer('EdgeKeys', 'Current and not-yet-retired keys.'), ...errors('500') },
      },
    },
    '/v1/owner/pools': {
      post: {
        operationId: 'createPool',
        tags: ['owner'],
        summary: 'Create a pool (scope pool-owner)',
        requestBody: jsonBody('CreatePoolRequest'),
        responses: { '201': jsonAnswer('Pool', 'The pool.'), ...errors('400', '401', '403', '409', '500') },
      },
      get: {
        operationId: 'listOwnerPools',
        tags: ['owner'],
        summary: 'Your pools (scope pool-owner)',
        responses: { '200': jsonAnswer('OwnerPoolList', 'Your pools.'), ...errors('401', '403', '500') },
      },
    },
    '/v1/owner/agents': {
      post: {
        operationId: 'registerAgent',
        tags: ['owner'],
        summary: 'Register an agent (scope pool-owner)',
        description: 'The body carries `proof`: the agent\'s signature over the canonical registration body, proving possession of the key.',
        requestBody: jsonBody('RegisterAgentRequest'),
        responses: { '201': jsonAnswer('AgentRegistration', 'The registration, with the edge key agents must trust.'), ...errors('400', '401', '403', '404', '409', '500') },
      },
    },
    '/v1/owner/agents/{id}': {
      patch: {
        operationId: 'updateAgent',
        tags: ['owner'],
        summary: 'Update an agent: price, spans, status, endpoint (scope pool-owner)',
        parameters: [pathId('Agent id.')],
        requestBody: jsonBody('UpdateAgentRequest'),
        responses: { '200': jsonAnswer('OwnerAgent', 'The agent.'), ...errors('400', '401', '403', '404', '500') },
      },
      delete: {
        operationId: 'deregisterAgent',
        tags: ['owner'],
        summary: 'Deregister an agent (scope pool-owner)',
        parameters: [pathId('Agent id.')],
        responses: { '200': jsonAnswer('DeletedAgent', 'Deregistered.'), ...errors('401', '403', '404', '500') },
      },
    },
    '/v1/owner/models': {
      post: {
        operationId: 'publishModel',
        tags: ['owner'],
        summary: 'Publish a model manifest (scope pool-owner)',
        description: 'Idempotent on the manifest hash: 201 when created, 200 when it already existed.',
        requestBody: jsonBody('PublishModelRequest'),
        responses: {
          '200': jsonAnswer('PublishedModel', 'Already published.'),
          '201': jsonAnswer('PublishedModel', 'Published.'),
          ...errors('400', '401', '403', '409', '500'),
        },
      },
    },
    '/v1/owner/models/{id}': {
      get: {
        operationId: 'getOwnerModel',
        tags: ['owner'],
        summary: 'A published model and which of its tokenizer files are uploaded (scope pool-owner)',
        description: 'An imported model (`tokenizer.kind` `hf-tokenizer`) is served only once every tokenizer file its manifest lists is uploaded; until then completions answer 503.',
        parameters: [modelParam],
        responses: { '200': jsonAnswer('OwnerModel', 'The model and its tokenizer files.'), ...errors('401', '403', '404', '500') },
      },
    },
    '/v1/owner/models/{id}/files/{path}': {
      put: {
        operationId: 'uploadModelFile',
        tags: ['owner'],
        summary: "Upload one of an imported model's tokenizer files (scope pool-owner)",
        description:
          'The body is the file itself. It must have exactly the size and SHA-256 the manifest gives for `path` (400 naming which differs); ' +
          'a body larger than the manifest says is refused while it arrives (413). Idempotent: 201 when stored, 200 when it was there already.',
        parameters: [
          modelParam,
          { name: 'path', in: 'path', required: true, description: 'The file name, as the manifest lists it.', schema: { type: 'string', enum: [...modelFilePathSchema.options] } },
        ],
        requestBody: { required: true, content: { 'application/octet-stream': { schema: { type: 'string', contentMediaType: 'application/octet-stream' } } } },
        responses: {
          '200': jsonAnswer('ModelFileUpload', 'Already uploaded.'),
          '201': jsonAnswer('ModelFileUpload', 'Stored.'),
          ...errors('400', '401', '403', '404', '408', '413', '415', '500'),
        },
      },
    },
    '/v1/agents/{id}/heartbeat': {
      post: {
        operationId: 'agentHeartbeat',
        tags: ['agents'],
        summary: 'Signed agent heartbeat',
        description: 'Authenticated by the agent\'s signature over the body (not an API key); `seq` must strictly increase.',
        security: [],
        parameters: [pathId('Agent id.')],
        requestBody: jsonBody('HeartbeatRequest'),
        responses: { '200': jsonAnswer('HeartbeatAck', 'Accepted.'), ...errors('400', '401', '404', '409', '500') },
      },
    },
    '/v1/admin/pools/{id}/stake': {
      post: {
        operationId: 'creditStake',
        tags: ['admin'],
        summary: "Credit a pool's deposited stake (scope admin)",
        description: 'Recorded in the ledger; slashes draw on it. Routes through unstaked pools only get the share of traffic the operator allows.',
        parameters: [pathId('Pool id.')],
        requestBody: jsonBody('CreditStakeRequest'),
        responses: { '200': jsonAnswer('Pool', 'The pool with its stake.'), ...errors('400', '401', '403', '404', '500') },
      },
    },
    '/healthz': {
      get: {
        operationId: 'health',
        tags: ['ops'],
        summary: 'Liveness of the edge',
        security: [],
        responses: { '200': jsonAnswer('Health', 'Alive.') },
      },
    },
  };
}

/** The generated document (loosely typed: it is JSON). */
export interface OpenApiDocument {
  openapi: string;
  info: JsonObject;
  servers: JsonObject[];
  paths: Record<string, JsonObject>;
  components: { schemas: Record<string, JsonObject>; responses: Record<string, JsonObject>; [key: string]: unknown };
  [key: string]: unknown;
}

export interface OpenApiOptions {
  /** Absolute URL of the edge, listed as the document's server. */
  serverUrl?: string;
}

/**
 * The OpenAPI 3.1 document. Pure and deterministic: cache it per server URL.
 *
 * @example
 * const doc = buildOpenApiDocument({ serverUrl: 'https://edge.example.com' });
 * doc.paths['/v1/chat/completions'].post.requestBody;
 */
export function buildOpenApiDocument(options: OpenApiOptions = {}): OpenApiDocument {
  const inputs = componentSchemas(INPUT_SCHEMAS, 'input');
  const outputs = componentSchemas(OUTPUT_SCHEMAS, 'output');
  const responses: Record<string, JsonObject> = {};
  for (const [code, description] of Object.entries(errorDescriptions())) {
    responses[`Error${code}`] = {
      description,
      headers: {
        'x-request-id': { $ref: '#/components/headers/RequestId' },
        ...(code === '429' || code === '503' ? { 'retry-after': { description: 'Seconds to wait before retrying.', schema: { type: 'integer' } } } : {}),
      },
      content: { 'application/json': { schema: ref('ErrorEnvelope') } },
    };
  }
  return {
    openapi: OPENAPI_VERSION,
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    info: {
      title: 'LayerNet edge API',
      version: API_VERSION,
      description:
        'OpenAI-compatible inference over a decentralized network of layer-block agents. Requests may carry route preferences; ' +
        'answers name the route that served them and summarise the attestation chain the edge verified; the full chain is public to the caller ' +
        'and can be re-verified against the keys in the public registry view (`/v1/pools`) and the edge keys (`/v1/edge/keys`). ' +
        'Errors use the OpenAI envelope `{"error": {"message", "type", "code", "param"}}` with an `x-request-id` header.',
    },
    servers: [{ url: options.serverUrl ?? '/' }],
    security: [{ bearerAuth: [] }],
    tags: [
      { name: 'inference', description: 'Completions and models (scope inference).' },
      { name: 'verification', description: 'Attestation chains and the keys to check them.' },
      { name: 'registry', description: 'Public view of pools and agents.' },
      { name: 'owner', description: 'Pool owners: pools, agents, models (scope pool-owner).' },
      { name: 'agents', description: 'Signed agent traffic.' },
      { name: 'ops', description: 'Operations.' },
    ],
    paths: paths(),
    components: {
      securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer', description: 'An API key (`Authorization: Bearer <key>`).' } },
      headers: { RequestId: { description: 'Request id: quote it when reporting a problem.', schema: { type: 'string' } } },
      responses,
      schemas: { ...inputs, ...outputs },
    },
  };
}

/**
 * A self-contained HTML page that fetches the document at `specUrl` and renders its operations
 * and schemas with inline script (no CDN, no external asset).
 *
 * @example
 * return new Response(openApiDocsHtml('/openapi.json'), { headers: { 'content-type': 'text/html; charset=utf-8' } });
 */
export function openApiDocsHtml(specUrl: string): string {
  // JSON inside <script>: escape '<' so the URL cannot close the script element.
  const url = JSON.stringify(specUrl).replace(/</g, '\\u003c');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>LayerNet API</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;margin:0;color:#1d2330;background:#f7f8fa}
header{background:#1d2330;color:#fff;padding:16px 24px}header h1{margin:0;font-size:20px}
main{max-width:1000px;margin:0 auto;padding:16px 24px}
.op{background:#fff;border:1px solid #dde1e8;border-radius:6px;margin:10px 0}
.op summary{cursor:pointer;padding:10px 12px;display:flex;gap:10px;align-items:baseline}
.m{font:bold 12px monospace;text-transform:uppercase;padding:2px 6px;border-radius:4px;color:#fff;min-width:52px;text-align:center}
.get{background:#2f7d32}.post{background:#1565c0}.patch{background:#8e6b00}.delete{background:#b71c1c}
.p{font-family:monospace;font-weight:600}.s{color:#555}
.body{padding:0 14px 12px}pre{background:#f0f2f5;padding:8px;border-radius:4px;overflow:auto;font-size:12px}
a{color:#1565c0}code{background:#f0f2f5;padding:0 3px;border-radius:3px}
.lock{font-size:12px;color:#8e6b00}
</style>
</head>
<body>
<header><h1>LayerNet edge API</h1><div id="desc"></div></header>
<main><p id="status">Loading the OpenAPI document…</p><section id="ops"></section><h2>Schemas</h2><section id="schemas"></section></main>
<script>
(function () {
  var SPEC = ${url};
  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    (children || []).forEach(function (c) { e.appendChild(typeof c === 'string' ? document.createTextNode(c) : c); });
    return e;
  }
  function refName(s) { return s && s.$ref ? s.$ref.split('/').pop() : null; }
  function schemaLink(s) {
    var n = refName(s);
    return n ? el('a', { href: '#schema-' + n }, [n]) : el('code', {}, [JSON.stringify(s)]);
  }
  fetch(SPEC).then(function (r) { return r.json(); }).then(function (doc) {
    document.getElementById('status').textContent = 'OpenAPI ' + doc.openapi + ' · version ' + doc.info.version + ' · ' + SPEC;
    document.getElementById('desc').textContent = doc.info.description || '';
    var ops = document.getElementById('ops');
    Object.keys(doc.paths).forEach(function (path) {
      var item = doc.paths[path];
      Object.keys(item).forEach(function (method) {
        var op = item[method];
        var body = el('div', { class: 'body' });
        if (op.description) body.appendChild(el('p', {}, [op.description]));
        if (op.security && op.security.length === 0) body.appendChild(el('p', { class: 'lock' }, ['Public: no API key.']));
        (op.parameters || []).forEach(function (p) {
          body.appendChild(el('div', {}, [el('code', {}, [p.in + ' ' + p.name + (p.required ? ' (required)' : '')]), ' ', p.description || '']));
        });
        if (op.requestBody) {
          var rb = op.requestBody.content['application/json'];
          body.appendChild(el('div', {}, ['Request body: ', schemaLink(rb && rb.schema)]));
        }
        var list = el('ul');
        Object.keys(op.responses || {}).forEach(function (code) {
          var res = op.responses[code];
          if (res.$ref) res = doc.components.responses[refName(res)] || {};
          var li = el('li', {}, [el('b', {}, [code]), ' ', res.description || '']);
          Object.keys(res.content || {}).forEach(function (type) {
            li.appendChild(el('div', {}, [el('code', {}, [type]), ' ', schemaLink(res.content[type].schema)]));
            if (res.content[type]['x-sse-event-schema']) li.appendChild(el('div', {}, ['events: ', schemaLink(res.content[type]['x-sse-event-schema'])]));
          });
          list.appendChild(li);
        });
        body.appendChild(el('div', {}, ['Responses:']));
        body.appendChild(list);
        var auth = op.security && op.security.length === 0 ? '' : ' \\u{1F512}';
        ops.appendChild(el('details', { class: 'op' }, [
          el('summary', {}, [el('span', { class: 'm ' + method }, [method]), el('span', { class: 'p' }, [path]), el('span', { class: 's' }, [(op.summary || '') + auth])]),
          body,
        ]));
      });
    });
    var schemas = document.getElementById('schemas');
    Object.keys(doc.components.schemas).sort().forEach(function (name) {
      schemas.appendChild(el('details', { class: 'op', id: 'schema-' + name }, [
        el('summary', {}, [el('span', { class: 'p' }, [name])]),
        el('div', { class: 'body' }, [el('pre', {}, [JSON.stringify(doc.components.schemas[name], null, 2)])]),
      ]));
    });
    if (location.hash) { var t = document.getElementById(location.hash.slice(1)); if (t) { t.open = true; t.scrollIntoView(); } }
  }).catch(function (e) { document.getElementById('status').textContent = 'Could not load ' + SPEC + ': ' + e; });
})();
</script>
</body>
</html>
`;
}
