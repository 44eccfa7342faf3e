/**
 * The model builder: Llama-architecture ONNX files with deterministic weights and a manifest.
 *
 * @example
 * import { buildModel, loadManifest, verifyModelFiles } from './model/index.js';
 */
export {
  buildModel,
  loadManifest,
  MANIFEST_FILE,
  ModelFileError,
  parameterCount,
  PRESETS,
  resolveArchitecture,
  verifyModelFiles,
  type BuildModelOptions,
  type BuiltModel,
  type PresetName,
} from './build.js';
export { createProgressBar, type ProgressBar } from './progress.js';
export { fromFloat16Array, toFloat16Array } from './weights.js';
