// Module resolution hook (node:module register), one swap and nothing else:
// `pool-agent/server/agent.ts` gets ./remote-stage.ts in place of pool-agent/server/remote-stage.ts
// (its RemoteStage sends other bytes than the agent attested, and signs what it sends).
const SWAP = ['/pool-agent/server/agent.ts', '/pool-agent/server/remote-stage.ts', new URL('./remote-stage.ts', import.meta.url).href];

const pathOf = (url) => (url ? new URL(url).pathname : '');

export async function resolve(specifier, context, nextResolve) {
  const resolved = await nextResolve(specifier, context);
  const [importer, module, swap] = SWAP;
  if (pathOf(context.parentURL).endsWith(importer) && pathOf(resolved.url).endsWith(module)) return nextResolve(swap, context);
  return resolved;
}
