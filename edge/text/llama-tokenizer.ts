/**
 * The real EdgeTokenizer: the Llama-2 tokenizer and chat template of protocol/tokenizer.ts
 * (the manifests' `llama-sentencepiece-bpe` / `llama-2` template).
 *
 * @example
 * const t = createLlamaTokenizer();
 * t.encodeChat([{ role: 'user', content: 'Hi' }]); // [1, 518, 25580, ...]
 */
import { applyChatTemplate, decode, encode, EOS_ID, StreamingDecoder, type ChatRole } from '../../protocol/tokenizer.js';
import type { EdgeTokenizer } from '../deps.js';

const ROLES = new Set<ChatRole>(['system', 'user', 'assistant', 'tool']);

export function createLlamaTokenizer(): EdgeTokenizer {
  return {
    eosId: EOS_ID,
    encodeChat: (messages) =>
      applyChatTemplate(
        messages.map((m) => ({ role: ROLES.has(m.role as ChatRole) ? (m.role as ChatRole) : m.role === 'developer' ? 'system' : 'user', content: m.content })),
      ),
    encodePrompt: (text) => encode(text, { bos: true }),
    decode: (ids) => decode(ids),
    streamingDecoder: () => new StreamingDecoder(),
  };
}
