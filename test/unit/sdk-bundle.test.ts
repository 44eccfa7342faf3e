/**
 * The SDK must run unchanged in browsers and Workers: bundling it (with everything it imports
 * from protocol/ and zod) must not reach a Node builtin, and the bundle must work in a realm
 * that has only web globals (no process, require, Buffer). And it must stay small for a page:
 * minified and gzipped, the browser bundle holds a size budget (`npm run bench:size -w sdk`
 * prints the figure and what it is made of).
 */
import { describe, expect, it } from 'vitest';
import { build, type Plugin } from 'esbuild';
import { readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';
import { gzipSync } from 'node:zlib';

const entry = fileURLToPath(new URL('../../sdk/src/index.ts', import.meta.url));
/** Bytes of the minified, gzipped browser bundle (BENCHMARKS.md: 107 kB before zod/mini, issue 16). */
const GZIP_BUDGET_BYTES = 40_000;
const builtins = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));

/** Records every import that names a Node builtin, wherever esbuild would resolve it. */
function nodeBuiltinSpy(hits: string[]): Plugin {
  return {
    name: 'node-builtin-spy',
    setup(b) {
      b.onResolve({ filter: /.*/ }, (args) => {
        const bare = args.path.split('/')[0]!;
        if (args.path.startsWith('node:') || builtins.has(args.path) || builtins.has(bare)) hits.push(`${args.path} (from ${args.importer})`);
        return undefined;
      });
    },
  };
}

async function bundle(platform: 'browser' | 'neutral', format: 'esm' | 'iife' = 'esm', minify = false) {
  const hits: string[] = [];
  const out = await build({
    entryPoints: [entry],
    bundle: true,
    write: false,
    format,
    ...(format === 'iife' ? { globalName: 'LayerNetSDK' } : {}),
    platform,
    ...(platform === 'neutral' ? { mainFields: ['module', 'main'], conditions: ['workerd', 'worker', 'browser', 'import'] } : {}),
    target: 'es2022',
    minify,
    metafile: true,
    logLevel: 'silent',
    plugins: [nodeBuiltinSpy(hits)],
  });
  return { hits, code: out.outputFiles[0]!.text, bytes: out.outputFiles[0]!.contents, inputs: Object.keys(out.metafile.inputs), errors: out.errors };
}

describe('SDK bundle', () => {
  it('bundles for the browser without any Node builtin', async () => {
    const { hits, code, errors } = await bundle('browser');
    expect(errors).toEqual([]);
    expect(hits).toEqual([]);
    expect(code).not.toMatch(/\brequire\(["']/);
    expect(code).toContain('chat.completion');
  });

  it('bundles for workerd-like runtimes (platform neutral) without any Node builtin', async () => {
    const { hits, errors } = await bundle('neutral');
    expect(errors).toEqual([]);
    expect(hits).toEqual([]);
  });

  it('the spy does catch a Node import (the check can fail)', async () => {
    const hits: string[] = [];
    await build({
      stdin: { contents: "import { readFileSync } from 'node:fs'; import 'crypto'; export const x = readFileSync;", resolveDir: process.cwd() },
      bundle: true,
      write: false,
      platform: 'node',
      logLevel: 'silent',
      plugins: [nodeBuiltinSpy(hits)],
    });
    expect(hits.map((h) => h.split(' ')[0])).toEqual(['node:fs', 'crypto']);
  });

  it(`the minified browser bundle is at most ${GZIP_BUDGET_BYTES / 1000} kB gzipped`, async () => {
    const { bytes } = await bundle('browser', 'esm', true);
    const gzipped = gzipSync(bytes).byteLength;
    console.log(`SDK browser bundle: ${(bytes.byteLength / 1000).toFixed(1)} kB minified, ${(gzipped / 1000).toFixed(1)} kB gzipped (budget ${GZIP_BUDGET_BYTES / 1000} kB)`);
    expect(gzipped).toBeLessThanOrEqual(GZIP_BUDGET_BYTES);
  });

  it('the browser bundle holds zod/mini and zod-free protocol code: no zod classic, no protocol schema module', async () => {
    const { inputs, code } = await bundle('browser');
    // Answers are validated with the zod/mini mirrors of sdk/src/schemas.ts; the protocol's zod
    // schemas (api.ts, ticket.ts, ...) are imported for their types only and must not be bundled.
    const zod = inputs.filter((p) => p.includes('node_modules/zod/'));
    expect(zod.filter((p) => p.includes('/v4/classic/'))).toEqual([]);
    expect(zod.some((p) => p.includes('/v4/mini/'))).toBe(true);
    const protocol = inputs.filter((p) => p.startsWith('protocol/'));
    expect(protocol).toContain('protocol/attestation-chain.ts');
    for (const file of protocol) expect({ file, importsZod: /from ['"]zod/.test(readFileSync(new URL(`../../${file}`, import.meta.url), 'utf8')) }).toEqual({ file, importsZod: false });
    // zod/mini compiles no parser at run time: a page whose CSP forbids eval sees no violation.
    expect(code).not.toMatch(/\bnew Function\b/);
  });

  it('the browser bundle runs in a realm with only web globals', async () => {
    const { code } = await bundle('browser', 'iife');
    const requests: string[] = [];
    const fetchStub = async (input: string, init: RequestInit) => {
      requests.push(`${init.method} ${input} ${new Headers(init.headers).get('authorization')}`);
      return new Response(JSON.stringify({ object: 'list', data: [{ id: 'tiny', object: 'model', created: 1, owned_by: 'x', manifest_hash: 'h', num_layers: 4, dtype: 'float32', agents: 1 }] }), {
        headers: { 'content-type': 'application/json' },
      });
    };
    const web = {
      fetch: fetchStub,
      crypto: globalThis.crypto,
      TextEncoder,
      TextDecoder,
      ReadableStream,
      Headers,
      Request,
      Response,
      URL,
      URLSearchParams,
      AbortController,
      AbortSignal,
      DOMException,
      Event,
      EventTarget,
      setTimeout,
      clearTimeout,
      atob,
      btoa,
      console,
    };
    const realm = vm.createContext({ ...web });
    vm.runInContext(code, realm);
    expect(vm.runInContext('typeof process + typeof require + typeof Buffer', realm)).toBe('undefinedundefinedundefined');
    const out = await vm.runInContext(
      `(async () => {
        const client = new LayerNetSDK.LayerNet({ apiKey: 'ln_k', baseURL: 'https://edge.example/v1' });
        const models = await client.models.list();
        return models.data[0].id;
      })()`,
      realm,
    );
    expect(out).toBe('tiny');
    expect(requests).toEqual(['GET https://edge.example/v1/models Bearer ln_k']);
  });
});
