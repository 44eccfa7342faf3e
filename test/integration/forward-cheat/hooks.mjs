// Module resolution hook (node:module register), one swap and nothing else: the two modules of
// pool-agent/server that make a RemoteStage (the head's job loop and a later hop's frame handler)
// get ./remote-stage.ts in place of pool-agent/server/remote-stage.ts (its RemoteStage sends other
// bytes than the agent attested, and signs what it sends).
const IMPORTERS = ['/pool-agent/server/head-job.ts', '/pool-agent/server/downstream-hop.ts'];
const MODULE = '/pool-agent/server/remote-stage.ts';
const SWAP = new URL('./remote-stage.ts', import.meta.url).href;

const pathOf = (url) => (url ? new URL(url).pathname : '');

export async function resolve(specifier, context, nextResolve) {
  const resolved = await nextResolve(specifier, context);
  const parent = pathOf(context.parentURL);
  if (IMPORTERS.some((importer) => parent.endsWith(importer)) && pathOf(resolved.url).endsWith(MODULE)) return nextResolve(SWAP, context);
  return resolved;
}
