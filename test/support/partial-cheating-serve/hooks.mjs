// Module resolution hook (node:module register), two swaps and nothing else:
// - `pool-agent/cli/serve.ts` gets ./pipeline.ts in place of pool-agent/runtime/local-pipeline.ts
//   (its span cheats on some jobs);
// - `pool-agent/server/agent.ts` gets ./session-manager.ts in place of
//   pool-agent/server/session-manager.ts (it tells the span which job a session is opened for).
const SWAPS = [
  ['/pool-agent/cli/serve.ts', '/pool-agent/runtime/local-pipeline.ts', new URL('./pipeline.ts', import.meta.url).href],
  ['/pool-agent/server/agent.ts', '/pool-agent/server/session-manager.ts', new URL('./session-manager.ts', import.meta.url).href],
];

const pathOf = (url) => (url ? new URL(url).pathname : '');

export async function resolve(specifier, context, nextResolve) {
  const resolved = await nextResolve(specifier, context);
  const parent = pathOf(context.parentURL);
  for (const [importer, module, swap] of SWAPS) {
    if (parent.endsWith(importer) && pathOf(resolved.url).endsWith(module)) return nextResolve(swap, context);
  }
  return resolved;
}
