// Module resolution hook (node:module register): `pool-agent/cli/serve.ts` gets
// ./pipeline.ts in place of pool-agent/runtime/local-pipeline.ts. Nothing else changes.
const PIPELINE = new URL('./pipeline.ts', import.meta.url).href;

const pathOf = (url) => (url ? new URL(url).pathname : '');

export async function resolve(specifier, context, nextResolve) {
  const resolved = await nextResolve(specifier, context);
  if (pathOf(context.parentURL).endsWith('/pool-agent/cli/serve.ts') && pathOf(resolved.url).endsWith('/pool-agent/runtime/local-pipeline.ts')) {
    return nextResolve(PIPELINE, context);
  }
  return resolved;
}
