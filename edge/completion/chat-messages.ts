/**
 * OpenAI chat messages as chat templates read them: `developer` is `system`, content parts are
 * joined into text (null is ''), and an assistant's tool calls carry their arguments as an object
 * when the JSON text is one (as vLLM hands them over: Llama 3's template writes `arguments | tojson`
 * and would quote a string again; Qwen's takes either).
 *
 * @example
 * const messages = templateMessages(body.messages);
 * const ids = tokenizer.encodeChat(messages, { tools: body.tools });
 */
import type { ChatMessage, ToolCall } from '../../protocol/api.js';
import type { EdgeChatMessage, EdgeToolCall } from '../deps.js';

function parsedArguments(text: string): unknown {
  try {
    const value: unknown = JSON.parse(text);
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? value : text;
  } catch {
    return text;
  }
}

function toolCall(call: ToolCall): EdgeToolCall {
  return { id: call.id, type: 'function', function: { name: call.function.name, arguments: parsedArguments(call.function.arguments) } };
}

export function templateMessages(messages: readonly ChatMessage[]): EdgeChatMessage[] {
  return messages.map((m) => ({
    role: m.role === 'developer' ? 'system' : m.role,
    content: m.content === null ? '' : typeof m.content === 'string' ? m.content : m.content.map((p) => p.text).join(''),
    ...(m.name !== undefined ? { name: m.name } : {}),
    ...(m.tool_call_id !== undefined ? { tool_call_id: m.tool_call_id } : {}),
    ...(m.tool_calls?.length ? { tool_calls: m.tool_calls.map(toolCall) } : {}),
  }));
}
