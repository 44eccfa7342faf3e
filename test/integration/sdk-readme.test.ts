/**
 * sdk/README.md's examples, run as written against a real network (the edge in workerd, a real
 * agent, the demo model): every ```ts block of the README carries a marker just above it,
 *
 *   <!-- sdk-readme-test: runs -->                        a program on its own
 *   <!-- sdk-readme-test: runs after the quick start -->  goes on from the first block (its `client`, `completion`)
 *   <!-- sdk-readme-test: not run: WHY -->                a fragment, and why it cannot run
 *
 * so a new block cannot slip in untested. The edge URL, the API key and the model name the README
 * shows are swapped for the test network's; then each program is type-checked (strict, as the
 * repository's tsconfig; `@layernet/sdk` is the workspace's source), bundled with esbuild and run
 * in a fresh Node, which must exit 0.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { build, type Plugin } from 'esbuild';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNetwork, type TestNetwork } from '../support/network.js';

const REPO = resolve(import.meta.dirname, '../..');
const SDK_ENTRY = join(REPO, 'sdk/src/index.ts');
/** What the README shows, and what stands in for it here. */
const PLACEHOLDERS = { edge: "'http://127.0.0.1:8787'", key: "'ln_...'", model: "'layernet-llama-tiny-fp32-seed0'" } as const;
const MARKER = /^<!-- sdk-readme-test: (runs|runs after the quick start|not run: .+) -->$/;

interface Block {
  line: number;
  marker: string;
  code: string;
}

/** Every ```ts block of the README, with the marker on the line above it (blank lines skipped). */
function readmeBlocks(readme: string): Block[] {
  const lines = readme.split('\n');
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (lines[i] !== '```ts') continue;
    const end = lines.indexOf('```', i + 1);
    if (end < 0) throw new Error(`sdk/README.md:${i + 1}: unclosed code block`);
    let above = i - 1;
    while (above >= 0 && lines[above]!.trim() === '') above--;
    const marker = MARKER.exec(lines[above]?.trim() ?? '')?.[1];
    if (!marker) throw new Error(`sdk/README.md:${i + 1}: a \`\`\`ts block without a marker above it (<!-- sdk-readme-test: runs | runs after the quick start | not run: WHY -->)`);
    blocks.push({ line: i + 1, marker, code: lines.slice(i + 1, end).join('\n') });
    i = end;
  }
  return blocks;
}

/** Splits a block into its import lines and the rest. */
function splitImports(code: string): { imports: string[]; body: string } {
  const lines = code.split('\n');
  const imports = lines.filter((l) => /^import\s.+from\s+'[^']+';$/.test(l));
  return { imports, body: lines.filter((l) => !imports.includes(l)).join('\n') };
}

/** The program a block stands for: on its own, or inside a block scope after the quick start. */
function programOf(block: Block, quickStart: Block): string {
  if (block.marker === 'runs') return block.code;
  const first = splitImports(quickStart.code);
  const own = splitImports(block.code);
  return [...new Set([...first.imports, ...own.imports])].join('\n') + `\n${first.body}\n{\n${own.body}\n}\n`;
}

/** `@layernet/sdk` as the workspace builds it: its source. */
const sdkFromSource: Plugin = {
  name: 'sdk-from-source',
  setup(b) {
    b.onResolve({ filter: /^@layernet\/sdk$/ }, () => ({ path: SDK_ENTRY }));
  },
};

function typeErrors(files: string[]): string[] {
  const program = ts.createProgram(files, {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    lib: ['lib.es2023.d.ts', 'lib.dom.d.ts', 'lib.dom.iterable.d.ts'],
    types: ['node'],
    typeRoots: [join(REPO, 'node_modules/@types')],
    strict: true,
    noUncheckedIndexedAccess: true,
    skipLibCheck: true,
    noEmit: true,
    paths: { '@layernet/sdk': [SDK_ENTRY] },
  });
  // Only the examples' own errors: the SDK's are the typecheck's business.
  return ts
    .getPreEmitDiagnostics(program)
    .filter((d) => d.file && files.includes(d.file.fileName))
    .map((d) => {
      const at = d.file!.getLineAndCharacterOfPosition(d.start ?? 0);
      return `${d.file!.fileName}:${at.line + 1}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`;
    });
}

function runNode(file: string, env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [file], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      done({ code, stdout, stderr });
    });
  });
}

let net: TestNetwork;
let dir: string;

beforeAll(async () => {
  net = await startNetwork({ agents: [{ name: 'eu', region: 'eu-west', price: 0.2 }] });
  await net.waitForAgents(1);
  dir = await mkdtemp(join(tmpdir(), 'layernet-sdk-readme-'));
}, 180_000);

afterAll(async () => {
  await net?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("sdk/README.md's examples", () => {
  it('type-check and run as written against the network', async () => {
    const blocks = readmeBlocks(await readFile(join(REPO, 'sdk/README.md'), 'utf8'));
    const quickStart = blocks[0]!;
    expect(quickStart.marker, 'the first block is the quick start, a program on its own').toBe('runs');
    for (const p of Object.values(PLACEHOLDERS)) expect(quickStart.code, `the quick start shows ${p}`).toContain(p);
    const runnable = blocks.filter((b) => !b.marker.startsWith('not run'));
    expect(runnable.length).toBeGreaterThanOrEqual(5);

    const programs = runnable.map((b) => ({
      block: b,
      source: programOf(b, quickStart)
        .replaceAll(PLACEHOLDERS.edge, JSON.stringify(net.edgeUrl))
        .replaceAll(PLACEHOLDERS.key, JSON.stringify(net.apiKey))
        .replaceAll(PLACEHOLDERS.model, JSON.stringify(net.modelName)),
      file: join(dir, `readme-line-${b.line}.ts`),
    }));
    for (const p of programs) await writeFile(p.file, p.source);
    expect(typeErrors(programs.map((p) => p.file))).toEqual([]);

    const env: NodeJS.ProcessEnv = { ...process.env };
    delete env.LAYERNET_BASE_URL;
    delete env.LAYERNET_API_KEY;
    for (const p of programs) {
      const out = p.file.replace(/\.ts$/, '.mjs');
      await build({ entryPoints: [p.file], outfile: out, bundle: true, format: 'esm', platform: 'node', target: 'node20', logLevel: 'silent', plugins: [sdkFromSource] });
      const ran = await runNode(out, env);
      expect(ran.code, `sdk/README.md block at line ${p.block.line} (${p.block.marker}) failed:\n${ran.stderr}\nstdout: ${ran.stdout}\nprogram:\n${p.source}`).toBe(0);
      expect(ran.stdout.trim(), `block at line ${p.block.line} printed nothing`).not.toBe('');
    }
  }, 180_000);
});
