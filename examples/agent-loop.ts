/**
 * A tool-using agent loop over streamed completions.
 *
 * Tool protocol (deliberately simple, line-based): the model writes `CALL name(args)` on a line
 * of its own to call a tool, and `FINAL: answer` when it is done. The loop runs each call, feeds
 * the results back as `tool` messages, and stops at FINAL or after `maxSteps` turns.
 *
 * The local network serves a random-weights demo model: its text is gibberish, so it will
 * rarely (if ever) emit a well-formed CALL. The parser therefore accepts only exact, known,
 * bounded tool calls, ignores everything else, and the step limit always ends the loop. Point it
 * at a network serving a real instruction-tuned model and the same loop does real work.
 *
 * Run: `node --import tsx examples/agent-loop.ts "What is 2 + 3?"` (add `--verify` to re-check
 * every answer's attestation chain before using it).
 */
import { pathToFileURL } from 'node:url';
import { AttestationError, type ChatMessage, type LayerNet } from '../sdk/src/index.js';
import { connect } from './stack.js';

export interface Tool {
  description: string;
  run: (args: string) => string | Promise<string>;
}

export const TOOLS: Record<string, Tool> = {
  add: {
    description: 'add(a, b): the sum of two numbers',
    run: (args) => {
      const nums = args.split(',').map((s) => Number(s.trim()));
      if (nums.length !== 2 || nums.some((n) => !Number.isFinite(n))) return 'error: add takes two numbers';
      return String(nums[0]! + nums[1]!);
    },
  },
  time: { description: 'time(): the current UTC time', run: () => new Date().toISOString() },
  echo: { description: 'echo(text): repeats the text', run: (args) => args.slice(0, 200) },
};

export interface ToolCall {
  name: string;
  args: string;
}

const MAX_ARGS = 500;
const MAX_CALLS_PER_TURN = 4;

/** Exact `CALL name(args)` lines naming known tools; anything else is ignored. */
export function parseToolCalls(text: string, tools: Record<string, Tool> = TOOLS): ToolCall[] {
  const calls: ToolCall[] = [];
  for (const line of text.split(/\r?\n/)) {
    const m = /^\s*CALL\s+([a-z_][a-z0-9_]{0,31})\((.*)\)\s*$/.exec(line);
    if (!m || !Object.hasOwn(tools, m[1]!) || m[2]!.length > MAX_ARGS) continue;
    calls.push({ name: m[1]!, args: m[2]! });
    if (calls.length >= MAX_CALLS_PER_TURN) break;
  }
  return calls;
}

/** The answer after `FINAL:` on a line of its own, if any. */
export function parseFinal(text: string): string | null {
  const m = /^\s*FINAL:\s*(.+)$/m.exec(text);
  return m ? m[1]!.trim() : null;
}

export interface AgentLoopOptions {
  client: LayerNet;
  model: string;
  task: string;
  maxSteps?: number;
  maxTokensPerStep?: number;
  tools?: Record<string, Tool>;
  verify?: boolean;
  /** Receives the streamed text as it arrives. */
  onText?: (text: string) => void;
  onEvent?: (event: string) => void;
}

export interface AgentLoopResult {
  final: string | null;
  steps: number;
  toolCalls: ToolCall[];
  stoppedBy: 'final' | 'max_steps';
  messages: ChatMessage[];
}

export async function runAgentLoop(opts: AgentLoopOptions): Promise<AgentLoopResult> {
  const tools = opts.tools ?? TOOLS;
  const maxSteps = opts.maxSteps ?? 4;
  const toolList = Object.values(tools)
    .map((t) => `- ${t.description}`)
    .join('\n');
  const messages: ChatMessage[] = [
    {
      role: 'system',
      content: `You can use tools. To call one, write a line "CALL name(args)". When you know the answer, write a line "FINAL: answer".\nTools:\n${toolList}`,
    },
    { role: 'user', content: opts.task },
  ];
  const toolCalls: ToolCall[] = [];
  for (let step = 1; step <= maxSteps; step++) {
    opts.onEvent?.(`step ${step}/${maxSteps}`);
    const stream = await opts.client.chat.completions.create(
      { model: opts.model, messages, stream: true, max_tokens: opts.maxTokensPerStep ?? 48, stream_options: { include_usage: true } },
      { verify: opts.verify ?? false },
    );
    for await (const chunk of stream) {
      const t = chunk.choices[0]?.delta.content;
      if (t) opts.onText?.(t);
    }
    const text = stream.text;
    if (stream.verification) opts.onEvent?.(`verified ${stream.verification.chunks} chunks on ${stream.verification.agents.join(' -> ')}`);
    messages.push({ role: 'assistant', content: text });
    const final = parseFinal(text);
    if (final !== null) return { final, steps: step, toolCalls, stoppedBy: 'final', messages };
    const calls = parseToolCalls(text, tools);
    if (calls.length === 0) {
      messages.push({ role: 'user', content: 'Reply with a line "CALL name(args)" or "FINAL: answer".' });
      continue;
    }
    for (const [i, call] of calls.entries()) {
      let result: string;
      try {
        result = await tools[call.name]!.run(call.args);
      } catch (err) {
        result = `error: ${err instanceof Error ? err.message : String(err)}`;
      }
      toolCalls.push(call);
      opts.onEvent?.(`CALL ${call.name}(${call.args}) -> ${result}`);
      messages.push({ role: 'tool', content: result, tool_call_id: `call_${step}_${i}` });
    }
  }
  return { final: null, steps: maxSteps, toolCalls, stoppedBy: 'max_steps', messages };
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const verify = args.includes('--verify');
  const task = args.filter((a) => !a.startsWith('--')).join(' ') || 'What is 2 + 3? Use the add tool.';
  const { client, model } = await connect();
  console.log(`model ${model}; task: ${task}\n(the demo model has random weights: expect gibberish and the step limit)\n`);
  try {
    const result = await runAgentLoop({
      client,
      model,
      task,
      verify,
      onText: (t) => process.stdout.write(t),
      onEvent: (e) => console.log(`\n[${e}]`),
    });
    console.log(`\n\nstopped by ${result.stoppedBy} after ${result.steps} steps; tool calls: ${result.toolCalls.length}; final: ${result.final ?? '(none)'}`);
  } catch (err) {
    if (err instanceof AttestationError) console.error(`\nrefused an unverifiable answer: ${err.reason}: ${err.detail}`);
    throw err;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
}
