/** POST /v1/chat/completions (OpenAI-compatible, stream and non-stream; tools go to the model's chat template). */
import type { Hono } from 'hono';
import type { AppEnv } from '../deps.js';
import { chatCompletionRequestSchema } from '../../protocol/api.js';
import { requireScope } from '../auth/middleware.js';
import { parseWith, readJsonBody } from '../http/body.js';
import { serveCompletion } from '../completion/serve.js';
import { templateMessages } from '../completion/chat-messages.js';
import { modelWithTokenizer } from '../models.js';

export function registerChatCompletions(app: Hono<AppEnv>): void {
  app.post('/v1/chat/completions', requireScope('inference'), async (c) => {
    const deps = c.get('deps');
    const body = parseWith(chatCompletionRequestSchema, await readJsonBody(c.req.raw, deps.config.maxBodyBytes, deps.config.bodyReadTimeoutMs));
    const { model, tokenizer } = await modelWithTokenizer(deps, body.model);
    const promptIds = tokenizer.encodeChat(templateMessages(body.messages), body.tools ? { tools: body.tools } : {});
    return serveCompletion(c, deps, { kind: 'chat', body, model, tokenizer, promptIds });
  });
}
