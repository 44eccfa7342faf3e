/** Shared by the runtime and model tests: builds models into a fresh temp dir per test file. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildModel, type BuildModelOptions, type BuiltModel } from '../../pool-agent/model/build.js';

export interface TempModels {
  root: string;
  build(name: string, options: Omit<BuildModelOptions, 'outDir'>): Promise<BuiltModel>;
  cleanup(): Promise<void>;
}

export async function tempModels(): Promise<TempModels> {
  const root = await mkdtemp(join(tmpdir(), 'layernet-models-'));
  return {
    root,
    build: (name, options) => buildModel({ ...options, outDir: join(root, name) }),
    cleanup: () => rm(root, { recursive: true, force: true }),
  };
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** Span layouts of a 4-layer model into 1, 2, 3 and 4 spans. */
export const LAYOUTS: readonly (readonly [number, number])[][] = [
  [[0, 4]],
  [[0, 2], [2, 4]],
  [[0, 1], [1, 3], [3, 4]],
  [[0, 1], [1, 2], [2, 3], [3, 4]],
];
