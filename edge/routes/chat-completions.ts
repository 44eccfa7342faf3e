/** POST /v1/chat/completions (OpenAI-compatible, stream and non-stream). */
import type { Hono } from 'hono';
import type { AppEnv } from '../deps.js';
import { chatCompletionRequestSchema } from '../../protocol/api.js';
import { requireScope } from '../auth/middleware.js';
import { parseWith, readJsonBody } from '../http/body.js';
import { serveCompletion } from '../completion/serve.js';

export function registerChatCompletions(app: Hono<AppEnv>): void {
  app.post('/v1/chat/completions', requireScope('inference'), async (c) => {
    const deps = c.get('deps');
    const body = parseWith(chatCompletionRequestSchema, await readJsonBody(c.req.raw, deps.config.maxBodyBytes, deps.config.bodyReadTimeoutMs));
    const messages = body.messages.map((m) => ({
      role: m.role === 'developer' ? 'system' : m.role,
      content: m.content === null ? '' : typeof m.content === 'string' ? m.content : m.content.map((p) => p.text).join(''),
    }));
    const promptIds = deps.tokenizer.encodeChat(messages);
    return serveCompletion(c, deps, { kind: 'chat', body, promptIds });
  });
}
