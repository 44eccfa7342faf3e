/**
 * The model runtime: layer spans on onnxruntime-node, deterministic sampling, and generation
 * across a chain of stages. See types.ts for the contract the agent server depends on.
 *
 * @example
 * import { loadSpan, generate } from './runtime/index.js';
 */
export * from './types.js';
export { loadSpan, MAX_SESSION_BYTES, type LoadProgress, type LoadSpanOptions } from './span.js';
export { SpanClosedError, SpanInputError } from './errors.js';
export { argmax, sampleToken, uniformAt, type SamplingParams } from './sampler.js';
export { forwardChain, generate, type FinishReason, type GenerateOptions, type GenerateResult, type Stage } from './pipeline.js';
export { mergeOnnxModels } from './merge.js';
export { loadAgentSpan, loadDeviceSpan, parseDevices, pipelineSpan, splitLayers, type DeviceSpec } from './local-pipeline.js';
