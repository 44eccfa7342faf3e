import { describe, expect, it } from 'vitest';
import { createLlamaTokenizer } from '../../edge/text/llama-tokenizer.js';
import { createByteTokenizer } from '../../edge/text/byte-tokenizer.js';
import { StopScanner } from '../../edge/text/stop.js';

describe('edge tokenizers and stop strings', () => {
  it('the llama adapter round-trips text and streams the same text as decode()', () => {
    const t = createLlamaTokenizer();
    const ids = t.encodePrompt('Hello world, héllo 🌍!');
    expect(ids[0]).toBe(1);
    const d = t.streamingDecoder();
    const streamed = ids.map((id) => d.push(id)).join('') + d.flush();
    expect(streamed).toBe(t.decode(ids));
    expect(streamed).toBe('Hello world, héllo 🌍!');
    const chat = t.encodeChat([{ role: 'developer', content: 'Be brief.' }, { role: 'user', content: 'Hi' }]);
    expect(t.decode(chat)).toContain('Be brief.');
    expect(t.eosIds).toEqual([2]);
  });

  it('the llama template leaves tool definitions out and writes tool calls and results as text', () => {
    const t = createLlamaTokenizer();
    const text = t.decode(
      t.encodeChat(
        [
          { role: 'user', content: 'Weather in Paris?' },
          { role: 'assistant', content: '', tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: { city: 'Paris' } } }] },
          { role: 'tool', content: '18 C', tool_call_id: 'call_1' },
        ],
        { tools: [{ type: 'function', function: { name: 'get_weather', description: 'SECRET-DESCRIPTION' } }] },
      ),
    );
    expect(text).toContain('[TOOL CALL] {"name":"get_weather","arguments":{"city":"Paris"}}');
    expect(text).toContain('[TOOL RESULT]\n18 C');
    expect(text).not.toContain('SECRET-DESCRIPTION');
  });

  it('the byte double holds back incomplete characters', () => {
    const t = createByteTokenizer();
    const ids = t.encodePrompt('é').slice(1);
    const d = t.streamingDecoder();
    expect(d.push(ids[0]!)).toBe('');
    expect(d.push(ids[1]!)).toBe('é');
  });

  it('stop strings are found across token boundaries and never leak', () => {
    const s = new StopScanner(['END', '\n\n']);
    const pieces = ['Hel', 'lo E', 'N', 'D more'];
    const out = pieces.map((p) => s.push(p));
    expect(out.map((o) => o.text).join('')).toBe('Hello ');
    expect(out.at(-1)!.stopped).toBe(true);
    const t = new StopScanner(['END']);
    expect(t.push('abc EN').text).toBe('abc ');
    expect(t.push('X').text).toBe('ENX');
    expect(t.flush()).toBe('');
    const u = new StopScanner(['END']);
    u.push('E');
    expect(u.flush()).toBe('E');
  });
});
