/**
 * A byte-level tokenizer (id = UTF-8 byte + 3; 1 = BOS, 2 = EOS): the test double of
 * EdgeTokenizer for unit tests and benches, with the same streaming behaviour as a real one
 * (multi-byte characters complete only when their last byte arrives). Its chat template ignores
 * tools and tool calls.
 *
 * @example
 * const t = createByteTokenizer();
 * t.decode(t.encodePrompt('hi').slice(1)); // 'hi'
 */
import type { EdgeTokenizer } from '../deps.js';

export const BYTE_TOKENIZER_VOCAB = 259;

export function createByteTokenizer(): EdgeTokenizer {
  const enc = new TextEncoder();
  const toIds = (text: string) => [1, ...Array.from(enc.encode(text), (b) => b + 3)];
  const bytesOf = (ids: readonly number[]) => Uint8Array.from(ids.filter((id) => id >= 3).map((id) => id - 3));
  return {
    eosIds: [2],
    encodePrompt: toIds,
    encodeChat: (messages) => toIds(messages.map((m) => `<${m.role}>${m.content}`).join('\n') + '\n<assistant>'),
    decode: (ids) => new TextDecoder().decode(bytesOf(ids)),
    streamingDecoder() {
      const decoder = new TextDecoder();
      return {
        push: (id) => (id >= 3 ? decoder.decode(Uint8Array.of(id - 3), { stream: true }) : ''),
        flush: () => decoder.decode(),
      };
    },
  };
}
