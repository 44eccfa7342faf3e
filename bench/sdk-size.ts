/**
 * Size of the SDK in a browser: sdk/src/index.ts bundled for the browser with esbuild (ESM,
 * es2022, everything it imports from protocol/ and zod included), minified and gzipped, and
 * what the minified bytes are made of. test/unit/sdk-bundle.test.ts holds the budget.
 *
 * @example
 * npm run bench:size -w sdk        # or: node --import tsx bench/sdk-size.ts
 */
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const root = fileURLToPath(new URL('..', import.meta.url));
const kB = (n: number) => `${(n / 1000).toFixed(1)} kB`;

async function bundle(minify: boolean) {
  const out = await build({
    entryPoints: ['sdk/src/index.ts'],
    absWorkingDir: root,
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    minify,
    metafile: true,
    logLevel: 'silent',
  });
  return { bytes: out.outputFiles[0]!.contents, metafile: out.metafile };
}

const plain = await bundle(false);
const min = await bundle(true);
console.log(`SDK browser bundle: ${kB(plain.bytes.byteLength)} unminified, ${kB(min.bytes.byteLength)} minified, ${kB(gzipSync(min.bytes).byteLength)} gzipped`);

// Minified bytes per part: the SDK, the protocol code it runs, and each zod directory.
const parts = new Map<string, number>();
for (const output of Object.values(min.metafile.outputs)) {
  for (const [input, { bytesInOutput }] of Object.entries(output.inputs)) {
    const part = input.startsWith('node_modules/') ? input.split('/').slice(0, -1).join('/') : input;
    parts.set(part, (parts.get(part) ?? 0) + bytesInOutput);
  }
}
for (const [part, bytes] of [...parts].sort((a, b) => b[1] - a[1])) console.log(`  ${kB(bytes).padStart(9)}  ${part}`);
