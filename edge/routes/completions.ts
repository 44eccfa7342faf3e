/**
 * POST /v1/completions (legacy OpenAI text completions, stream and non-stream). The prompt is
 * text (tokenized with the model's tokenizer, special tokens as it adds them) or token ids, used
 * as given once each is checked against the model's vocabulary.
 */
import type { Hono } from 'hono';
import type { AppEnv } from '../deps.js';
import { completionRequestSchema, type CompletionRequest } from '../../protocol/api.js';
import { ApiError } from '../../protocol/errors.js';
import { requireScope } from '../auth/middleware.js';
import { parseWith, readJsonBody } from '../http/body.js';
import { serveCompletion } from '../completion/serve.js';
import { modelWithTokenizer } from '../models.js';

/** The prompt's token ids when it was given as ids (`number[]` or `[number[]]`), else null. */
function promptTokenIds(prompt: CompletionRequest['prompt']): number[] | null {
  if (typeof prompt === 'string') return null;
  const first = prompt[0];
  if (typeof first === 'string') return null;
  return Array.isArray(first) ? first : (prompt as number[]);
}

export function registerCompletions(app: Hono<AppEnv>): void {
  app.post('/v1/completions', requireScope('inference'), async (c) => {
    const deps = c.get('deps');
    const body = parseWith(completionRequestSchema, await readJsonBody(c.req.raw, deps.config.maxBodyBytes, deps.config.bodyReadTimeoutMs));
    const { model, tokenizer } = await modelWithTokenizer(deps, body.model);
    const ids = promptTokenIds(body.prompt);
    if (ids === null) {
      const promptText = typeof body.prompt === 'string' ? body.prompt : (body.prompt[0] as string);
      return serveCompletion(c, deps, { kind: 'text', body, model, tokenizer, promptIds: tokenizer.encodePrompt(promptText), promptText });
    }
    // The agents' embedding has vocabSize rows: an id past it would fail there, after routing.
    const vocab = model.manifest.architecture.vocabSize;
    const bad = ids.findIndex((id) => id >= vocab);
    if (bad >= 0) throw new ApiError('invalid_request', `prompt: token id ${ids[bad]} (at ${bad}) is outside the model's vocabulary (0..${vocab - 1})`, 'prompt');
    const promptText = body.echo ? tokenizer.decode(ids) : '';
    return serveCompletion(c, deps, { kind: 'text', body, model, tokenizer, promptIds: ids, promptText });
  });
}
