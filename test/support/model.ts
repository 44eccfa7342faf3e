/**
 * The tiny model every integration suite shares, built once per run by the global setup into
 * `.models/tiny` (the same folder `npm start` uses; the build is idempotent and cached by content).
 */
import { resolve } from 'node:path';
import { manifestHash, type Manifest } from '../../protocol/manifest.js';
import { buildModel, loadManifest } from '../../pool-agent/model/build.js';

export const TEST_MODEL_DIR = resolve(import.meta.dirname, '../../.models/tiny');

export interface TestModel {
  manifest: Manifest;
  modelId: string;
  numLayers: number;
}

/** Builds the tiny model when absent (global setup), else just reads it. */
export async function ensureTestModel(): Promise<TestModel> {
  const built = await buildModel({ preset: 'tiny', outDir: TEST_MODEL_DIR });
  return { manifest: built.manifest, modelId: built.modelId, numLayers: built.manifest.architecture.numLayers };
}

export async function testModel(): Promise<TestModel> {
  const manifest = await loadManifest(TEST_MODEL_DIR).catch(() => null);
  if (!manifest) return ensureTestModel();
  return { manifest, modelId: await manifestHash(manifest), numLayers: manifest.architecture.numLayers };
}

/** A model folder someone else built or imported. */
export async function readTestModel(dir: string): Promise<TestModel> {
  const manifest = await loadManifest(dir);
  return { manifest, modelId: await manifestHash(manifest), numLayers: manifest.architecture.numLayers };
}
