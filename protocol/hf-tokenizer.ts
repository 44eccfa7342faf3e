/**
 * Tokenizer and chat template of an imported Hugging Face model, built from the files a hub
 * checkpoint ships (`tokenizer.json`, `tokenizer_config.json`, `chat_template.jinja`). Pure: no
 * Node, Workers or database import, so the edge, the SDK and pool agents share it.
 *
 * The files come from whoever imports a model, so they are treated as hostile: every problem with
 * them surfaces once, at load, as a {@link TokenizerFileError} naming the file.
 *
 * @example
 * const tok = createHfTokenizer({ tokenizerJson, tokenizerConfig });
 * const ids = tok.encodeChat([{ role: 'user', content: 'Hi' }]);
 * const stream = tok.streamingDecoder();
 * for (const id of generated) send(stream.push(id));
 * send(stream.flush());
 */
import { Environment, Interpreter, Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';
import { z } from 'zod';

export interface HfTokenizerFiles {
  /** tokenizer.json text (required). */
  tokenizerJson: string;
  /** tokenizer_config.json text (special tokens, `chat_template`). */
  tokenizerConfig?: string;
  /** chat_template.jinja text (newer checkpoints keep the template there; it wins over tokenizer_config's). */
  chatTemplate?: string;
}

export interface ChatTemplateMessage {
  role: string;
  content: string;
  name?: string;
  tool_call_id?: string;
  tool_calls?: unknown[];
}

export interface ChatOptions {
  /** OpenAI-style tool definitions, handed to the template as `tools` as they are. */
  tools?: unknown[];
  /** Default true. */
  addGenerationPrompt?: boolean;
  /** For templates that print today's date (`strftime_now`, `date_string`): default new Date(). */
  now?: Date;
  /**
   * Extra template variables (HF `apply_chat_template(**kwargs)`, vLLM `chat_template_kwargs`),
   * e.g. `{ enable_thinking: false }` for Qwen3. They cannot replace `messages`, `tools`,
   * `add_generation_prompt` or the template's helper functions.
   */
  templateKwargs?: Readonly<Record<string, unknown>>;
}

/**
 * A model file that cannot be used: not JSON, a wrong shape, or something the tokenizer cannot run.
 *
 * @example
 * try { createHfTokenizer({ tokenizerJson: '{' }); } catch (e) { (e as TokenizerFileError).file; } // 'tokenizer.json'
 */
export class TokenizerFileError extends Error {
  override readonly name = 'TokenizerFileError';
  constructor(
    /** `tokenizer.json`, `tokenizer_config.json` or `chat_template.jinja`. */
    readonly file: string,
    problem: string,
    options?: { cause?: unknown },
  ) {
    super(`${file}: ${problem}`, options);
  }
}

/**
 * The chat template refused the conversation (`raise_exception`), failed while rendering, or the
 * model has none. Callers map it to a 400: it is about the request, not about the model files.
 *
 * @example
 * try { tok.renderChat(messages); } catch (e) { if (e instanceof ChatTemplateError) return badRequest(e.message); }
 */
export class ChatTemplateError extends Error {
  override readonly name = 'ChatTemplateError';
}

/** Incremental detokenizer: see {@link HfTokenizer.streamingDecoder}. */
export interface TokenStreamDecoder {
  /** Text that became final with this id ('' while a character is incomplete, or for a special token). */
  push(id: number): string;
  /** Whatever is still held back (an incomplete character decodes to U+FFFD, as decode() does); ends the stream. */
  flush(): string;
}

export interface HfTokenizer {
  /** Largest id + 1, added tokens included. */
  readonly vocabSize: number;
  /** From tokenizer_config bos_token, if any. */
  readonly bosTokenId: number | null;
  /** From tokenizer_config eos_token, if any. */
  readonly eosTokenId: number | null;
  /** Added tokens marked special. */
  readonly specialTokenIds: ReadonlySet<number>;
  readonly hasChatTemplate: boolean;
  /** Special tokens as the tokenizer's post-processor says (e.g. BOS for Llama 3 when its post_processor is TemplateProcessing; nothing for Qwen). */
  encodePrompt(text: string): number[];
  /** The chat template rendered to text (HF apply_chat_template(tokenize=False)). Throws a {@link ChatTemplateError} when the template raises or the model has no template. */
  renderChat(messages: readonly ChatTemplateMessage[], options?: ChatOptions): string;
  /** renderChat, then encoded WITHOUT adding special tokens again (what HF apply_chat_template(tokenize=True) does). */
  encodeChat(messages: readonly ChatTemplateMessage[], options?: ChatOptions): number[];
  /** Skips special tokens by default. Ids outside the vocabulary throw RangeError. */
  decode(ids: readonly number[], options?: { skipSpecialTokens?: boolean }): string;
  /** Incremental decode: the pushes' outputs plus flush() equal decode(allIds); no U+FFFD for a character split across tokens; special tokens give ''. */
  streamingDecoder(): TokenStreamDecoder;
}

const TOKENIZER_JSON = 'tokenizer.json';
const TOKENIZER_CONFIG = 'tokenizer_config.json';
const CHAT_TEMPLATE = 'chat_template.jinja';
/** No real vocabulary comes near this (Gemma's 262k is among the largest). */
const MAX_VOCAB = 1 << 24;
/** Ids a window stream waits for a character; past it, emitting keeps each push O(1). */
const MAX_PENDING = 8;

// Vocabularies and merges have 10^5 entries: their shape is checked, not each entry.
const anObject = z.custom<Record<string, unknown>>((v) => typeof v === 'object' && v !== null && !Array.isArray(v), 'must be an object');
const anArray = z.custom<unknown[]>((v) => Array.isArray(v), 'must be an array');
const component = z.looseObject({ type: z.string() }).nullish();

const tokenizerJsonSchema = z.looseObject({
  added_tokens: z.array(z.looseObject({ id: z.int().min(0).max(MAX_VOCAB - 1), content: z.string().min(1), special: z.boolean().optional() })).default([]),
  ...{ normalizer: component, pre_tokenizer: component, post_processor: component, decoder: component },
  model: z.discriminatedUnion('type', [
    z.looseObject({ type: z.literal('BPE'), vocab: anObject, merges: anArray }),
    z.looseObject({ type: z.literal('WordPiece'), vocab: anObject }),
    z.looseObject({ type: z.literal('Unigram'), vocab: anArray }),
  ]),
});

/** tokenizer_config writes a special token as a string or as an AddedToken object. */
const tokenText = z.union([z.string(), z.looseObject({ content: z.string() })]);
const SPECIAL_TOKEN_KEYS = ['bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token', 'mask_token'] as const;
const tokenizerConfigSchema = z.looseObject({
  ...Object.fromEntries(SPECIAL_TOKEN_KEYS.map((k) => [k, tokenText.nullish()])),
  additional_special_tokens: z.array(tokenText).nullish(),
  chat_template: z.union([z.string(), z.array(z.object({ name: z.string(), template: z.string() }))]).nullish(),
});

function parseFile<S extends z.ZodType>(file: string, text: string, schema: S): z.output<S> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new TokenizerFileError(file, `not valid JSON (${(e as Error).message})`, { cause: e });
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issues = parsed.error.issues.slice(0, 3).map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
    throw new TokenizerFileError(file, `wrong shape (${issues.join('; ')})`);
  }
  return parsed.data;
}

const textOf = (t: z.infer<typeof tokenText> | null | undefined): string | undefined =>
  t == null ? undefined : typeof t === 'string' ? t : t.content;

function compileTemplate(file: string, source: string): Template {
  try {
    return new Template(source);
  } catch (e) {
    throw new TokenizerFileError(file, `chat template does not parse (${(e as Error).message})`, { cause: e });
  }
}

const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];
const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];

/**
 * Python's `strftime` for the directives chat templates use, in English and in UTC: the jinja
 * library's own `strftime_now` follows the host's locale and time zone, so two edges could render
 * the same prompt differently (Workers run in UTC anyway). `%-d` is glibc's unpadded form.
 */
function strftime(d: Date, format: string): string {
  const [month, day, hour] = [MONTHS[d.getUTCMonth()]!, DAYS[d.getUTCDay()]!, d.getUTCHours()];
  const fields: Record<string, string | number> = {
    d: d.getUTCDate(), m: d.getUTCMonth() + 1, Y: d.getUTCFullYear(), y: d.getUTCFullYear() % 100,
    H: hour, I: hour % 12 || 12, M: d.getUTCMinutes(), S: d.getUTCSeconds(), p: hour < 12 ? 'AM' : 'PM',
    B: month, b: month.slice(0, 3), A: day, a: day.slice(0, 3), '%': '%',
  };
  return format.replace(/%(-?)([a-zA-Z%])/g, (whole, noPad: string, c: string) => {
    const v = fields[c];
    if (typeof v !== 'number') return v ?? whole;
    return noPad ? String(v) : String(v).padStart(2, '0');
  });
}

/**
 * The globals `Template.render` declares, less the two we must replace: it declares
 * `raise_exception` and `strftime_now` itself and refuses a second declaration, so templates are
 * run through the library's Interpreter with an environment of our own.
 */
const MAX_RANGE = 100_000;
const JINJA_GLOBALS: Readonly<Record<string, unknown>> = {
  true: true, false: false, none: null, True: true, False: false, None: null,
  range(start: number, stop?: number, step = 1): number[] {
    if (stop === undefined) [start, stop] = [0, start];
    if (step === 0) throw new Error('range() step must not be zero');
    // Jinja's sandbox (which HF renders in) caps ranges the same way: a template is model input.
    if (Math.abs((stop - start) / step) > MAX_RANGE) throw new Error(`range() is limited to ${MAX_RANGE} items`);
    const out: number[] = [];
    for (let i = start; step > 0 ? i < stop : i > stop; i += step) out.push(i);
    return out;
  },
};

function renderTemplate(template: Template, context: Record<string, unknown>): string {
  const env = new Environment();
  for (const [name, value] of Object.entries({ ...JINJA_GLOBALS, ...context })) env.set(name, value);
  return String(new Interpreter(env).run(template.parsed).value);
}

/** Python dicts have no undefined values: a key left undefined must read as undefined, not as none. */
const plainMessage = (m: ChatTemplateMessage) => Object.fromEntries(Object.entries(m).filter(([, v]) => v !== undefined));

/**
 * Loads a tokenizer from a checkpoint's files. Throws {@link TokenizerFileError} for a file that is
 * not JSON, has the wrong shape, names special tokens it does not define, or whose chat template
 * does not parse. Loading Qwen3's 11 MB tokenizer.json takes 0.35-0.5 s in Node (a third of it
 * JSON.parse): load once per model, not per request.
 *
 * @example
 * const tok = createHfTokenizer({ tokenizerJson, tokenizerConfig });
 * tok.renderChat([{ role: 'user', content: 'Hi' }]); // '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n'
 * tok.decode(tok.encodePrompt('héllo 👋')); // 'héllo 👋'
 */
export function createHfTokenizer(files: HfTokenizerFiles): HfTokenizer {
  const json = parseFile(TOKENIZER_JSON, files.tokenizerJson, tokenizerJsonSchema);
  const config = files.tokenizerConfig === undefined ? {} : parseFile(TOKENIZER_CONFIG, files.tokenizerConfig, tokenizerConfigSchema);

  let tok: Tokenizer;
  try {
    tok = new Tokenizer(
      // The library insists the component keys exist; absent and null mean the same in HF.
      { ...json, normalizer: json.normalizer ?? null, pre_tokenizer: json.pre_tokenizer ?? null, post_processor: json.post_processor ?? null, decoder: json.decoder ?? null },
      { ...config, additional_special_tokens: (config.additional_special_tokens ?? []).map(textOf) },
    );
  } catch (e) {
    throw new TokenizerFileError(TOKENIZER_JSON, `cannot build the tokenizer (${(e as Error).message})`, { cause: e });
  }
  // Checked on the library's id map rather than on the file's object: the same ids, a tenth of
  // the time. Until then a bad id costs nothing worse than a sparse array entry.
  for (const id of tok.model?.tokens_to_ids.values() ?? []) {
    if (!Number.isInteger(id) || id < 0 || id >= MAX_VOCAB) throw new TokenizerFileError(TOKENIZER_JSON, `model.vocab ids must be integers in 0..${MAX_VOCAB - 1}`);
  }
  const vocab = tok.model?.vocab ?? [];
  const vocabSize = vocab.length;
  if (vocabSize > MAX_VOCAB) throw new TokenizerFileError(TOKENIZER_JSON, `model.vocab has more than ${MAX_VOCAB} tokens`);
  // The library's ByteLevel decoder is bytes to UTF-8 and nothing more, unless the model appends
  // an end-of-word suffix (then decode() rewrites it to spaces): only then can a stream count bytes.
  const byteLevel = json.decoder?.type === 'ByteLevel' && !tok.model?.end_of_word_suffix;
  const addedContents: ReadonlySet<string> = new Set(json.added_tokens.map((t) => t.content));
  const specialTokenIds: ReadonlySet<number> = new Set(json.added_tokens.filter((t) => t.special).map((t) => t.id));

  const specialTokens: Record<string, unknown> = {};
  for (const key of SPECIAL_TOKEN_KEYS) {
    // HF's special_tokens_map leaves unset tokens out, so `bos_token is defined` is false for Qwen.
    const text = textOf(config[key] as z.infer<typeof tokenText> | null | undefined);
    if (text) specialTokens[key] = text;
  }
  if (config.additional_special_tokens?.length) specialTokens.additional_special_tokens = config.additional_special_tokens.map(textOf);
  const idOf = (key: 'bos_token' | 'eos_token'): number | null => {
    const text = specialTokens[key] as string | undefined;
    if (text === undefined) return null;
    const id = tok.token_to_id(text);
    if (id === undefined) throw new TokenizerFileError(TOKENIZER_CONFIG, `${key} ${JSON.stringify(text)} is not a token of tokenizer.json`);
    return id;
  };
  const bosTokenId = idOf('bos_token');
  const eosTokenId = idOf('eos_token');

  // HF: a list of named templates picks 'tool_use' when tools are given, else 'default'.
  const templates = new Map<string, Template>();
  if (files.chatTemplate !== undefined) templates.set('default', compileTemplate(CHAT_TEMPLATE, files.chatTemplate));
  else if (typeof config.chat_template === 'string') templates.set('default', compileTemplate(TOKENIZER_CONFIG, config.chat_template));
  else for (const t of config.chat_template ?? []) templates.set(t.name, compileTemplate(TOKENIZER_CONFIG, t.template));

  const checkId = (id: number): void => {
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize || vocab[id] === undefined) {
      throw new RangeError(`token id ${id} is outside the vocabulary (0..${vocabSize - 1})`);
    }
  };
  // No clean-up of tokenization spaces (Llama 3's config asks for it): it turns "a . b" into
  // "a. b", so text would not round-trip and a window of a stream could clean differently from
  // the whole text.
  const decodeRaw = (ids: readonly number[]): string =>
    ids.length === 0 ? '' : tok.decode([...ids], { skip_special_tokens: false, clean_up_tokenization_spaces: false });
  const encode = (text: string, addSpecialTokens: boolean): number[] => {
    const { ids } = tok.encode(text, { add_special_tokens: addSpecialTokens });
    // The library yields undefined for a piece with no token when the model has no unk_token.
    if (ids.some((id) => id === undefined)) throw new TokenizerFileError(TOKENIZER_JSON, 'the text has a piece with no token and the model defines no unk_token');
    return ids;
  };

  const renderChat = (messages: readonly ChatTemplateMessage[], options: ChatOptions = {}): string => {
    const template = (options.tools !== undefined ? templates.get('tool_use') : undefined) ?? templates.get('default');
    if (!template) throw new ChatTemplateError('this model has no chat template (neither chat_template.jinja nor tokenizer_config.json chat_template)');
    const now = options.now ?? new Date();
    const context: Record<string, unknown> = {
      ...specialTokens,
      ...options.templateKwargs,
      messages: messages.map(plainMessage),
      add_generation_prompt: options.addGenerationPrompt ?? true,
      raise_exception: (message: unknown) => {
        throw new ChatTemplateError(`the chat template rejected the conversation: ${String(message)}`);
      },
      strftime_now: (format: unknown) => strftime(now, String(format)),
    };
    if (options.tools !== undefined) context.tools = options.tools;
    try {
      return renderTemplate(template, context);
    } catch (e) {
      if (e instanceof ChatTemplateError) throw e;
      throw new ChatTemplateError(`the chat template failed: ${(e as Error).message}`, { cause: e });
    }
  };

  return {
    vocabSize,
    bosTokenId,
    eosTokenId,
    specialTokenIds,
    hasChatTemplate: templates.size > 0,
    encodePrompt: (text) => encode(text, true),
    renderChat,
    // The rendered text already holds the template's special tokens (BOS included): adding the
    // post-processor's again would double Llama 3's <|begin_of_text|>.
    encodeChat: (messages, options) => encode(renderChat(messages, options), false),
    decode(ids, options = {}) {
      ids.forEach(checkId);
      const skip = options.skipSpecialTokens ?? true;
      return decodeRaw(skip ? ids.filter((id) => !specialTokenIds.has(id)) : ids);
    },
    streamingDecoder() {
      // decode() drops special ids before decoding, so the streams drop them too.
      const accept = (id: number): boolean => (checkId(id), !specialTokenIds.has(id));
      return byteLevel ? byteLevelStream(accept, vocab, addedContents) : windowStream(accept, decodeRaw);
    },
  };
}

/** GPT-2's byte-to-character table, which ByteLevel vocabularies are written in, inverted. */
const BYTE_OF_CHAR: ReadonlyMap<string, number> = (() => {
  const table = new Map<string, number>();
  let shifted = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
    table.set(String.fromCharCode(printable ? b : 256 + shifted++), b);
  }
  return table;
})();

/**
 * Byte bookkeeping for ByteLevel decoders: a streaming TextDecoder holds back exactly the bytes
 * of an incomplete character, however the tokens cut the text (a CJK run can chain tokens that
 * each end inside a character). It follows the library's decoder: an added token is written as
 * it is, after the pending bytes are flushed (so a cut character there becomes U+FFFD, as in decode()).
 */
function byteLevelStream(accept: (id: number) => boolean, vocab: readonly string[], added: ReadonlySet<string>): TokenStreamDecoder {
  // ignoreBOM: the library keeps a leading U+FEFF too.
  const utf8 = new TextDecoder('utf-8', { ignoreBOM: true });
  return {
    push(id) {
      if (!accept(id)) return '';
      const piece = vocab[id]!;
      if (added.has(piece)) return utf8.decode() + piece;
      return utf8.decode(Uint8Array.from(piece, (c) => BYTE_OF_CHAR.get(c) ?? 0), { stream: true });
    },
    flush: () => utf8.decode(),
  };
}

/**
 * Text-generation-inference's scheme, for every other decoder: `window` holds the ids of the last
 * emitted step (kept as context: Metaspace or Strip treat a leading piece differently) followed by
 * the ids not emitted yet, from `read` on. Each push decodes the window twice, and text ending in
 * U+FFFD waits for the next id. These decoders cut text only into whole characters or single
 * bytes (`<0xE6>`), so valid text waits at most 3 ids; past {@link MAX_PENDING} it is invalid
 * bytes, emitted as they stand (a U+FFFD may then fall apart from where decode() puts it).
 */
function windowStream(accept: (id: number) => boolean, decode: (ids: readonly number[]) => string): TokenStreamDecoder {
  let window: number[] = [];
  let read = 0;
  const step = (force: boolean): string => {
    const prefix = decode(window.slice(0, read));
    const text = decode(window);
    const incomplete = text.length <= prefix.length || text.endsWith('\uFFFD');
    if (incomplete && !force && window.length - read < MAX_PENDING) return '';
    window = window.slice(read);
    read = window.length;
    return text.slice(prefix.length);
  };
  return {
    push(id) {
      if (!accept(id)) return '';
      window.push(id);
      return step(false);
    },
    flush() {
      const rest = read < window.length ? step(true) : '';
      window = [];
      read = 0;
      return rest;
    },
  };
}
