/**
 * The real EdgeTokenizer of the built-in kind: the Llama-2 tokenizer and chat template of
 * protocol/tokenizer.ts (the manifests' `llama-sentencepiece-bpe` / `llama-2` template).
 *
 * Llama-2 has no tool format: tool definitions are left out of the prompt (as before tools were
 * accepted), tool results become user text after `[TOOL RESULT]` (protocol/tokenizer.ts), and an
 * assistant's tool calls become lines `[TOOL CALL] {"name", "arguments"}` of its turn, so a
 * conversation that went through tools still reads as what happened.
 *
 * @example
 * const t = createLlamaTokenizer();
 * t.encodeChat([{ role: 'user', content: 'Hi' }]); // [1, 518, 25580, ...]
 */
import { applyChatTemplate, decode, encode, EOS_ID, StreamingDecoder, type ChatRole } from '../../protocol/tokenizer.js';
import type { EdgeChatMessage, EdgeTokenizer } from '../deps.js';

const ROLES = new Set<ChatRole>(['system', 'user', 'assistant', 'tool']);

/** Marks an assistant's tool call rendered as text (the counterpart of `[TOOL RESULT]`). */
export const TOOL_CALL_MARKER = '[TOOL CALL]';

function contentOf(m: EdgeChatMessage): string {
  if (!m.tool_calls?.length) return m.content;
  const calls = m.tool_calls.map((c) => `${TOOL_CALL_MARKER} ${JSON.stringify({ name: c.function.name, arguments: c.function.arguments })}`);
  return [m.content, ...calls].filter((s) => s.length > 0).join('\n');
}

export function createLlamaTokenizer(): EdgeTokenizer {
  return {
    eosIds: [EOS_ID],
    encodeChat: (messages) =>
      applyChatTemplate(
        messages.map((m) => ({ role: ROLES.has(m.role as ChatRole) ? (m.role as ChatRole) : m.role === 'developer' ? 'system' : 'user', content: contentOf(m) })),
      ),
    encodePrompt: (text) => encode(text, { bos: true }),
    decode: (ids) => decode(ids),
    streamingDecoder: () => new StreamingDecoder(),
  };
}
