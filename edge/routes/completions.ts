/** POST /v1/completions (legacy OpenAI text completions, stream and non-stream). */
import type { Hono } from 'hono';
import type { AppEnv } from '../deps.js';
import { completionRequestSchema } from '../../protocol/api.js';
import { requireScope } from '../auth/middleware.js';
import { parseWith, readJsonBody } from '../http/body.js';
import { serveCompletion } from '../completion/serve.js';

export function registerCompletions(app: Hono<AppEnv>): void {
  app.post('/v1/completions', requireScope('inference'), async (c) => {
    const deps = c.get('deps');
    const body = parseWith(completionRequestSchema, await readJsonBody(c.req.raw, deps.config.maxBodyBytes, deps.config.bodyReadTimeoutMs));
    const promptText = typeof body.prompt === 'string' ? body.prompt : body.prompt[0]!;
    const promptIds = deps.tokenizer.encodePrompt(promptText);
    return serveCompletion(c, deps, { kind: 'text', body, promptIds, promptText });
  });
}
