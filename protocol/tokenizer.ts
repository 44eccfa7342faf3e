/**
 * Llama-2 tokenizer (SentencePiece BPE, 32000 tokens) for every runtime: edge (Workers), SDK and
 * pool agents. Pure module: the vocabulary ships inside `llama-tokenizer-js`, nothing is fetched.
 *
 * @example
 * const ids = encode('Hello world', { bos: true }); // [1, 15043, 3186]
 * decode(ids); // 'Hello world'
 * const prompt = applyChatTemplate([{ role: 'user', content: 'Hi' }]); // <s>[INST] Hi [/INST]
 */
import llamaTokenizer from 'llama-tokenizer-js';

export const BOS_ID = 1;
export const EOS_ID = 2;
export const UNK_ID = 0;
export const VOCAB_SIZE = 32000;

/** SentencePiece's word-boundary marker (U+2581), which stands for a space. */
const SPACE_MARK = '\u2581';
const BYTE_TOKEN = /^<0x([0-9A-F]{2})>$/;
const SPECIAL_IDS = new Set([UNK_ID, BOS_ID, EOS_ID]);

export interface EncodeOptions {
  /** Prepend `<s>` (default false). */
  bos?: boolean;
}

/**
 * Text to token ids, with SentencePiece's dummy leading space (like the reference tokenizer).
 *
 * @example
 * encode('Hello world'); // [15043, 3186]
 */
export function encode(text: string, options: EncodeOptions = {}): number[] {
  const bos = options.bos ?? false;
  const out: number[] = bos ? [BOS_ID] : [];
  if (text.length === 0) return out;
  // BPE runs per word: no Llama-2 piece holds a space after another character, so no merge
  // crosses the start of a word, and encoding words apart gives the same ids an order of
  // magnitude faster on long texts (the reference merges the whole text at once).
  const s = ` ${text}`;
  let start = 0;
  for (let i = 1; i <= s.length; i++) {
    if (i === s.length || (s.charCodeAt(i) === 32 && s.charCodeAt(i - 1) !== 32)) {
      for (const id of llamaTokenizer.encode(s.slice(start, i), false, false)) out.push(id);
      start = i;
    }
  }
  return out;
}

/** UTF-8 bytes of one token (byte tokens `<0xNN>` are single raw bytes). */
function tokenBytes(id: number, encoder: TextEncoder): Uint8Array {
  const piece = llamaTokenizer.vocabById[id];
  if (piece === undefined) throw new RangeError(`token id ${id} is outside the vocabulary (0..${VOCAB_SIZE - 1})`);
  const m = BYTE_TOKEN.exec(piece);
  if (m) return Uint8Array.of(parseInt(m[1]!, 16));
  return encoder.encode(piece);
}

/**
 * Incremental detokenizer: push token ids one by one, get text deltas whose concatenation equals
 * `decode(allIds)`. Holds back incomplete UTF-8 sequences (byte tokens) until they complete, and
 * drops the leading space SentencePiece adds to the first word. Special tokens yield ''.
 *
 * @example
 * const d = new StreamingDecoder();
 * const text = ids.map((id) => d.push(id)).join('') + d.flush();
 */
export class StreamingDecoder {
  private readonly utf8 = new TextDecoder('utf-8');
  private readonly encoder = new TextEncoder();
  private started = false;

  /** Text the token completes (may be '' while a multi-byte character is incomplete). */
  push(id: number): string {
    if (SPECIAL_IDS.has(id)) return '';
    const text = this.utf8.decode(tokenBytes(id, this.encoder), { stream: true });
    return this.emit(text);
  }

  /** Ends the stream: an incomplete trailing UTF-8 sequence becomes U+FFFD, as decode() renders it. */
  flush(): string {
    return this.emit(this.utf8.decode());
  }

  private emit(raw: string): string {
    let text = raw.replaceAll(SPACE_MARK, ' ');
    if (!this.started && text.length > 0) {
      this.started = true;
      if (text.startsWith(' ')) text = text.slice(1);
    }
    return text;
  }
}

/**
 * Token ids to text. Special tokens (`<unk>`, `<s>`, `</s>`) are skipped; the first word's
 * leading space is dropped (SentencePiece convention).
 *
 * @example
 * decode([1, 15043, 3186, 2]); // 'Hello world'
 */
export function decode(ids: readonly number[]): string {
  const d = new StreamingDecoder();
  let out = '';
  for (const id of ids) out += d.push(id);
  return out + d.flush();
}

export type ChatRole = 'system' | 'user' | 'assistant' | 'tool';
export interface ChatMessage {
  role: ChatRole;
  content: string;
}

/** Prefix of a tool result rendered as a user turn (Llama-2 has no tool role). */
export const TOOL_RESULT_MARKER = '[TOOL RESULT]';

const B_INST = '[INST]';
const E_INST = '[/INST]';
const B_SYS = '<<SYS>>\n';
const E_SYS = '\n<</SYS>>\n\n';

/**
 * Llama-2 chat prompt as token ids, following Meta's reference `chat_completion`:
 * `<s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} </s><s>[INST] {user} [/INST]`.
 * System messages (wherever they are) are joined into the first user turn; consecutive
 * user/tool messages are joined with a blank line; tool messages become user text prefixed by
 * `[TOOL RESULT]`. A trailing assistant message is left open (no `</s>`) so the model continues it.
 *
 * @example
 * applyChatTemplate([{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }]);
 */
export function applyChatTemplate(messages: readonly ChatMessage[]): number[] {
  const system = messages
    .filter((m) => m.role === 'system')
    .map((m) => m.content.trim())
    .filter((s) => s.length > 0)
    .join('\n\n');
  // Fold the dialogue into alternating user/assistant turns.
  const turns: { role: 'user' | 'assistant'; content: string }[] = [];
  for (const m of messages) {
    if (m.role === 'system') continue;
    const role = m.role === 'assistant' ? 'assistant' : 'user';
    const content = m.role === 'tool' ? `${TOOL_RESULT_MARKER}\n${m.content.trim()}` : m.content.trim();
    const last = turns[turns.length - 1];
    if (last && last.role === role) last.content += `\n\n${content}`;
    else turns.push({ role, content });
  }
  if (turns.length === 0 || turns[0]!.role !== 'user') turns.unshift({ role: 'user', content: '' });
  if (system.length > 0) turns[0]!.content = `${B_SYS}${system}${E_SYS}${turns[0]!.content}`;

  const ids: number[] = [];
  for (let i = 0; i < turns.length; i += 2) {
    const user = turns[i]!;
    const assistant = turns[i + 1];
    if (assistant === undefined) {
      ids.push(...encode(`${B_INST} ${user.content} ${E_INST}`, { bos: true }));
    } else if (i + 2 >= turns.length) {
      // Trailing assistant message: an open prefix the model continues.
      ids.push(...encode(`${B_INST} ${user.content} ${E_INST} ${assistant.content}`, { bos: true }));
    } else {
      ids.push(...encode(`${B_INST} ${user.content} ${E_INST} ${assistant.content} `, { bos: true }), EOS_ID);
    }
  }
  return ids;
}
