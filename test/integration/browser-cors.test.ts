/**
 * The SDK in a real browser: headless Chromium (Debian's `chromium`, driven by playwright-core)
 * opens a page served from another origin than the edge, loads the SDK's browser bundle and
 * streams a chat with `verify: true` through the real network (edge in workerd, a real agent).
 * Every call the SDK makes is cross-origin: the chat (preflighted: bearer key + JSON body), then
 * the job's record, the edge keys and the pools for verification. An error must reach the page
 * with its request id, and an owner route must stay closed to pages.
 */
import { createServer, type Server } from 'node:http';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNetwork, type TestNetwork } from '../support/network.js';

/** CHROMIUM_PATH when set, else Debian's package (installed by .ci/run) or the usual other names. */
function findChromium(): string {
  const candidates = process.env.CHROMIUM_PATH ? [process.env.CHROMIUM_PATH] : ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'];
  const found = candidates.find((p) => existsSync(p));
  if (!found) {
    throw new Error(
      `no Chromium binary for the browser test (looked at ${candidates.join(', ')}): install Debian's package ` +
        '(`apt-get install -y chromium`, as .ci/run does) or set CHROMIUM_PATH to a Chromium or Chrome executable',
    );
  }
  return found;
}

/** The SDK as a browser gets it: one ES module, zod included, no Node builtin. */
async function sdkBrowserBundle(): Promise<string> {
  const out = await build({
    entryPoints: [fileURLToPath(new URL('../../sdk/src/index.ts', import.meta.url))],
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    logLevel: 'silent',
  });
  return out.outputFiles[0]!.text;
}

const PAGE_HTML = `<!doctype html>
<html><head><meta charset="utf-8"><title>LayerNet in a browser</title></head>
<body>
<script type="module">
  import { LayerNet, AuthenticationError } from '/sdk.js';
  // A page error comes back as text: its stack would name page URLs the test runner cannot map.
  const reported = (run) => async (args) => {
    try {
      return await run(args);
    } catch (err) {
      return { failed: err.name + ': ' + err.message };
    }
  };
  window.streamVerifiedChat = reported(async ({ baseURL, apiKey, model }) => {
    const ln = new LayerNet({ baseURL, apiKey, verify: true, maxRetries: 0 });
    const stream = await ln.chat.completions.create({ model, messages: [{ role: 'user', content: 'Hello from a page' }], max_tokens: 8, seed: 7, stream: true });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
    return {
      text,
      jobIdHeader: stream.response.headers.get('x-layernet-job-id'),
      requestId: stream.requestId,
      attestation: stream.attestation,
      verification: stream.verification,
    };
  });
  window.badKeyError = reported(async ({ baseURL }) => {
    const ln = new LayerNet({ baseURL, apiKey: 'ln_aaaaaaaaaaaa_' + 'B'.repeat(43), maxRetries: 0 });
    const err = await ln.models.list().then(() => null, (e) => e);
    return err && { authenticationError: err instanceof AuthenticationError, status: err.status ?? null, code: err.code ?? null, requestId: err.requestId ?? null };
  });
  window.ownerRoute = async ({ baseURL, token }) => {
    try {
      const res = await fetch(baseURL + '/v1/owner/pools', { headers: { authorization: 'Bearer ' + token } });
      return 'answered ' + res.status;
    } catch (err) {
      return 'blocked: ' + err.name;
    }
  };
  window.sdkReady = true;
</script>
</body></html>`;

/** Serves the page and the SDK bundle on 127.0.0.1: another port, so another origin than the edge. */
async function servePage(sdk: string): Promise<{ server: Server; origin: string }> {
  const server = createServer((req, res) => {
    if (req.url === '/') res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(PAGE_HTML);
    else if (req.url === '/sdk.js') res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' }).end(sdk);
    else res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const address = server.address();
  if (!address || typeof address === 'string') throw new Error('page server has no port');
  return { server, origin: `http://127.0.0.1:${address.port}` };
}

interface PreflightSeen {
  url: string;
  status: number;
  allowOrigin: string | undefined;
}

let executablePath: string;
let net: TestNetwork | undefined;
let page: { server: Server; origin: string } | undefined;
let browser: Browser | undefined;

beforeAll(async () => {
  // First, so a missing browser fails at once with its message (never a silent skip).
  executablePath = findChromium();
  const sdk = await sdkBrowserBundle();
  net = await startNetwork({ agents: [{ name: 'solo', region: 'eu-west', price: 0.2 }] });
  await net.waitForAgents(1);
  page = await servePage(sdk);
  browser = await chromium.launch({ executablePath, headless: true });
}, 240_000);

afterAll(async () => {
  await browser?.close();
  await new Promise((r) => (page ? page.server.close(r) : r(undefined)));
  await net?.close();
});

describe('the SDK in headless Chromium, from another origin', () => {
  it('streams a chat with verify: true; the preflight is answered and the attestation re-verified in the page', async () => {
    const started = Date.now();
    const context = await browser!.newContext();
    const tab = await context.newPage();
    const consoleErrors: string[] = [];
    tab.on('console', (m) => {
      if (m.type() === 'error') consoleErrors.push(m.text());
    });
    // Preflights are not page requests: watch them through the DevTools protocol.
    const cdp = await context.newCDPSession(tab);
    await cdp.send('Network.enable');
    const preflights: PreflightSeen[] = [];
    cdp.on('Network.responseReceived', (e) => {
      if (e.type === 'Preflight') preflights.push({ url: e.response.url, status: e.response.status, allowOrigin: e.response.headers['access-control-allow-origin'] ?? e.response.headers['Access-Control-Allow-Origin'] });
    });

    await tab.goto(`${page!.origin}/`);
    await tab.waitForFunction(() => (window as unknown as { sdkReady?: boolean }).sdkReady === true);
    expect(new URL(net!.edgeUrl).origin).not.toBe(page!.origin);

    const result = await tab.evaluate(
      (args) => (window as unknown as { streamVerifiedChat(a: typeof args): Promise<Record<string, any>> }).streamVerifiedChat(args),
      { baseURL: net!.edgeUrl, apiKey: net!.apiKey, model: net!.modelName },
    );
    expect(result.failed, `the page failed; its console: ${consoleErrors.join('\n')}`).toBeUndefined();
    expect(typeof result.text).toBe('string');
    expect(result.text.length).toBeGreaterThan(0);
    // Exposed headers: without Access-Control-Expose-Headers the page would read null here.
    expect(result.jobIdHeader).toMatch(/\S/);
    expect(result.requestId).toMatch(/\S/);
    expect(result.attestation.job_id).toBe(result.jobIdHeader);
    expect(result.verification).toMatchObject({ verified: true, jobId: result.jobIdHeader, edgeKeyId: 'edge-test' });
    expect(result.verification.chainHead).toBe(result.attestation.chain_head);
    expect(result.verification.agents).toEqual([net!.agents[0]!.id]);
    expect(result.verification.chunks).toBeGreaterThan(0);

    const chatPreflight = preflights.find((p) => p.url === `${net!.edgeUrl}/v1/chat/completions`);
    expect(chatPreflight, `preflights seen: ${JSON.stringify(preflights)}`).toBeDefined();
    expect(chatPreflight!.status).toBe(204);
    expect(chatPreflight!.allowOrigin).toBe('*');
    expect(consoleErrors.filter((e) => /CORS/i.test(e))).toEqual([]);
    console.log(`browser chat + verification took ${Date.now() - started} ms; preflights: ${preflights.map((p) => `${new URL(p.url).pathname} ${p.status}`).join(', ')}`);
    await context.close();
  });

  it('hands an error to the page with its status and request id, and keeps owner routes closed to pages', async () => {
    const context = await browser!.newContext();
    const tab = await context.newPage();
    await tab.goto(`${page!.origin}/`);
    await tab.waitForFunction(() => (window as unknown as { sdkReady?: boolean }).sdkReady === true);

    const err = await tab.evaluate((args) => (window as unknown as { badKeyError(a: typeof args): Promise<Record<string, any> | null> }).badKeyError(args), { baseURL: net!.edgeUrl });
    expect(err).toMatchObject({ authenticationError: true, status: 401, code: 'invalid_api_key' });
    expect(err!.requestId).toMatch(/^req_/);

    const owner = await tab.evaluate((args) => (window as unknown as { ownerRoute(a: typeof args): Promise<string> }).ownerRoute(args), { baseURL: net!.edgeUrl, token: net!.ownerToken });
    expect(owner).toBe('blocked: TypeError');
    await context.close();
  });
});
