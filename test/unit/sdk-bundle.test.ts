/**
 * The SDK must run unchanged in browsers and Workers: bundling it (with everything it imports
 * from protocol/ and zod) must not reach a Node builtin, and the bundle must work in a realm
 * that has only web globals (no process, require, Buffer).
 */
import { describe, expect, it } from 'vitest';
import { build, type Plugin } from 'esbuild';
import { builtinModules } from 'node:module';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';

const entry = fileURLToPath(new URL('../../sdk/src/index.ts', import.meta.url));
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

async function bundle(platform: 'browser' | 'neutral', format: 'esm' | 'iife' = 'esm') {
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
    logLevel: 'silent',
    plugins: [nodeBuiltinSpy(hits)],
  });
  return { hits, code: out.outputFiles[0]!.text, errors: out.errors };
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
