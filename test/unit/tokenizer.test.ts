import { describe, expect, it } from 'vitest';
import llamaTokenizer from 'llama-tokenizer-js';
import {
  applyChatTemplate,
  BOS_ID,
  decode,
  encode,
  EOS_ID,
  StreamingDecoder,
  TOOL_RESULT_MARKER,
} from '../../protocol/tokenizer.js';

const SAMPLES = [
  'Hello world',
  '  leading spaces and\ttabs\n\nnew lines',
  'Unicode: 镇 🦙Ꙋ naïve café — “quotes”',
  'The llama (/ˈlɑːmə/; 🦙Spanish pronunciation: [ˈʎama]) is a domesticated camelid.',
  'code: for (let i = 0; i < n; i++) { sum += a[i]; }',
];

describe('encode / decode', () => {
  it('matches the reference Llama-2 ids', () => {
    expect(encode('Hello world', { bos: true })).toEqual([1, 15043, 3186]);
    expect(encode('Hello world')).toEqual([15043, 3186]);
    expect(encode('[INST]')).toEqual([518, 25580, 29962]);
    expect(encode('🦙')).toEqual([29871, 243, 162, 169, 156]);
    expect(encode('')).toEqual([]);
    expect(encode('', { bos: true })).toEqual([BOS_ID]);
  });

  it('round-trips text and skips special tokens', () => {
    for (const text of SAMPLES) {
      const ids = encode(text, { bos: true });
      expect(decode(ids)).toBe(text);
      expect(decode([...ids, EOS_ID])).toBe(text);
      expect(decode(ids)).toBe(llamaTokenizer.decode(ids));
    }
  });

  it('encodes word by word exactly as the reference encodes the whole text', () => {
    const alphabet = ['a', 'b', 'the', ' ', ' ', '  ', '\n', '\t', '镇', '🦙', 'Ꙋ', 'é', '.', ',', '1', '23', 'ing', '▁', '<s>', 'Ü'];
    let seed = 12345;
    const rand = (n: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % n;
    };
    for (let trial = 0; trial < 300; trial++) {
      let text = '';
      const len = 1 + rand(40);
      for (let i = 0; i < len; i++) text += alphabet[rand(alphabet.length)];
      expect(encode(text, { bos: true })).toEqual(llamaTokenizer.encode(text, true, true));
    }
    const long = SAMPLES.join(' ').repeat(20);
    expect(encode(long)).toEqual(llamaTokenizer.encode(long, false, true));
  });

  it('rejects ids outside the vocabulary', () => {
    expect(() => decode([32000])).toThrow(/outside the vocabulary/);
    expect(() => decode([-1])).toThrow(/outside the vocabulary/);
  });
});

describe('StreamingDecoder', () => {
  it('streams deltas that concatenate to decode(all), holding back split UTF-8', () => {
    for (const text of SAMPLES) {
      const ids = encode(text, { bos: true });
      const d = new StreamingDecoder();
      const deltas = ids.map((id) => d.push(id));
      deltas.push(d.flush());
      expect(deltas.join('')).toBe(decode(ids));
      // No delta ever carries a replacement character for a character that completes later.
      expect(deltas.join('')).not.toContain('\uFFFD');
    }
  });

  it('emits a 4-byte emoji only once all its byte tokens arrived', () => {
    const d = new StreamingDecoder();
    const [space, ...bytes] = encode('🦙');
    expect(d.push(space!)).toBe('');
    expect(bytes.slice(0, 3).map((b) => d.push(b))).toEqual(['', '', '']);
    expect(d.push(bytes[3]!)).toBe('🦙');
  });

  it('keeps the space between words but drops the first leading space', () => {
    const d = new StreamingDecoder();
    const [hello, world] = encode('Hello world');
    expect(d.push(hello!)).toBe('Hello');
    expect(d.push(world!)).toBe(' world');
  });

  it('renders a dangling partial character as U+FFFD like decode()', () => {
    const ids = encode('🦙').slice(0, 3);
    const d = new StreamingDecoder();
    const text = ids.map((id) => d.push(id)).join('') + d.flush();
    expect(text).toBe(decode(ids));
    expect(text).toContain('\uFFFD');
  });
});

describe('applyChatTemplate', () => {
  it('renders system + user like the Llama-2 reference', () => {
    const ids = applyChatTemplate([
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Hi there' },
    ]);
    expect(ids).toEqual(encode('[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi there [/INST]', { bos: true }));
    expect(ids[0]).toBe(BOS_ID);
  });

  it('closes completed turns with </s> and opens a new <s>[INST]', () => {
    const ids = applyChatTemplate([
      { role: 'user', content: 'a' },
      { role: 'assistant', content: 'b' },
      { role: 'user', content: 'c' },
    ]);
    expect(ids).toEqual([
      ...encode('[INST] a [/INST] b ', { bos: true }),
      EOS_ID,
      ...encode('[INST] c [/INST]', { bos: true }),
    ]);
  });

  it('renders tool results as marked user turns and merges consecutive user turns', () => {
    const ids = applyChatTemplate([
      { role: 'user', content: 'weather?' },
      { role: 'assistant', content: 'call get_weather' },
      { role: 'tool', content: '{"temp": 21}' },
      { role: 'user', content: 'thanks' },
    ]);
    const tail = decode(ids.slice(ids.lastIndexOf(BOS_ID)));
    expect(tail).toBe(`[INST] ${TOOL_RESULT_MARKER}\n{"temp": 21}\n\nthanks [/INST]`);
  });

  it('leaves a trailing assistant message open', () => {
    const ids = applyChatTemplate([
      { role: 'user', content: 'a' },
      { role: 'assistant', content: 'The answer is' },
    ]);
    expect(ids[ids.length - 1]).not.toBe(EOS_ID);
    expect(decode(ids)).toBe('[INST] a [/INST] The answer is');
  });
});
