/**
 * The tokenizer of each model. A model of the built-in kind (`llama-sentencepiece-bpe`) uses the
 * tokenizer that ships with the edge; an imported model (`hf-tokenizer`) brings its own files,
 * which its pool owner uploads to the registry: they are read from the request's store, checked
 * against the manifest's sizes and SHA-256 (the model id covers those hashes, so a matching file
 * is the one the model was published with), and the tokenizer built from them is kept per
 * isolate, keyed by model id (content-addressed, so it never goes stale).
 *
 * - Concurrent first requests for a model share one load (a promise cache).
 * - At most `maxModels` built tokenizers are kept (least recently used out): a large vocabulary
 *   holds tens of MB of the isolate's heap (Qwen3 ~30 MiB, Llama 3 ~43 MiB live in workerd,
 *   `npm run bench:edge-tokenizer`), and a Worker has 128 MB: two fit, four would not.
 * - A failed load is dropped once it settles: the next request tries again (files uploaded
 *   meanwhile are then found).
 * - Files not all uploaded, or a stored copy that does not match the manifest: 503 `no_route`
 *   with a message saying so, never a 500.
 *
 * @example
 * const tokenizers = createTokenizerProvider({ builtin: createLlamaTokenizer() });
 * const t = await tokenizers.forModel(model, store);
 * const ids = t.encodeChat([{ role: 'user', content: 'Hi' }], { tools });
 */
import { ApiError } from '../../protocol/errors.js';
import { sha256Hex } from '../../protocol/bytes.js';
import { stopTokenIds, type HfTokenizer as HfTokenizerSpec, type Manifest, type TokenizerFile } from '../../protocol/manifest.js';
import { ChatTemplateError, createHfTokenizer, TokenizerFileError, type HfTokenizer, type HfTokenizerFiles, type TokenStreamDecoder } from '../../protocol/hf-tokenizer.js';
import type { EdgeTokenizer, TokenizerProvider } from '../deps.js';
import type { ModelFileInfo, ModelRecord, RegistryStore } from '../../db/registry-contract.js';

type FileReader = Pick<RegistryStore, 'listModelFiles' | 'getModelFile'>;

export interface TokenizerProviderOptions {
  /** The built-in kind's tokenizer (Llama-2; unit tests pass the byte tokenizer). */
  builtin: EdgeTokenizer;
  /** Imported models' tokenizers kept at once (default 2: see the heap figures above). */
  maxModels?: number;
  /** Builds a tokenizer from checked files (default: protocol/hf-tokenizer.ts). */
  build?: (files: HfTokenizerFiles) => HfTokenizer;
  log?: (entry: Record<string, unknown>) => void;
}

/** Seconds a client is told to wait when a model's tokenizer files are missing. */
const RETRY_AFTER_S = 30;

/** Whether the stored file is the one the manifest pins. */
export function isUploaded(file: TokenizerFile, stored: readonly ModelFileInfo[]): boolean {
  return stored.some((s) => s.path === file.path && s.sha256 === file.sha256 && s.bytes === file.bytes);
}

/** The manifest's tokenizer files (none for the built-in kind). */
export function tokenizerFiles(manifest: Manifest): TokenizerFile[] {
  return manifest.tokenizer.kind === 'hf-tokenizer' ? manifest.tokenizer.files : [];
}

function notUploaded(model: ModelRecord, paths: string[]): ApiError {
  return new ApiError(
    'no_route',
    `model ${model.name} cannot be served yet: its tokenizer files are not uploaded (missing: ${paths.join(', ')}); its pool owner uploads them with \`pool-agent register\``,
    'model',
    RETRY_AFTER_S,
  );
}

export function createTokenizerProvider(options: TokenizerProviderOptions): TokenizerProvider {
  const maxModels = Math.max(1, options.maxModels ?? 2);
  const build = options.build ?? createHfTokenizer;
  /** model id -> tokenizer (or its load); Map order is recency of use, oldest first. */
  const loaded = new Map<string, Promise<EdgeTokenizer>>();

  const load = async (model: ModelRecord, spec: HfTokenizerSpec, store: FileReader): Promise<EdgeTokenizer> => {
    const stored = await store.listModelFiles(model.id);
    const missing = spec.files.filter((f) => !isUploaded(f, stored));
    if (missing.length) throw notUploaded(model, missing.map((f) => f.path));
    const texts = new Map<string, string>();
    for (const file of spec.files) {
      const content = await store.getModelFile(model.id, file.path);
      if (!content) throw notUploaded(model, [file.path]);
      // The row's recorded hash is not proof of its content: hash the bytes themselves.
      if (content.byteLength !== file.bytes || (await sha256Hex(content)) !== file.sha256) {
        const what = content.byteLength !== file.bytes ? `size (${content.byteLength} bytes, the manifest says ${file.bytes})` : 'SHA-256';
        options.log?.({ level: 'error', msg: 'stored tokenizer file does not match its manifest', modelId: model.id, path: file.path, what });
        throw new ApiError('no_route', `model ${model.name} cannot be served: the registry's copy of its ${file.path} does not match the manifest (${what}); its pool owner should upload it again`, 'model', RETRY_AFTER_S);
      }
      try {
        texts.set(file.path, new TextDecoder('utf-8', { fatal: true }).decode(content));
      } catch {
        throw new ApiError('no_route', `model ${model.name} cannot be served: its ${file.path} is not UTF-8 text`, 'model');
      }
    }
    let hf: HfTokenizer;
    try {
      hf = build({
        tokenizerJson: texts.get('tokenizer.json')!,
        ...(texts.has('tokenizer_config.json') ? { tokenizerConfig: texts.get('tokenizer_config.json')! } : {}),
        ...(texts.has('chat_template.jinja') ? { chatTemplate: texts.get('chat_template.jinja')! } : {}),
      });
    } catch (err) {
      if (!(err instanceof TokenizerFileError)) throw err;
      // The files match the manifest, so the model was published with a tokenizer this edge cannot read.
      options.log?.({ level: 'error', msg: 'tokenizer files do not load', modelId: model.id, file: err.file, error: err.message });
      throw new ApiError('no_route', `model ${model.name} cannot be served: its tokenizer does not load (${err.message})`, 'model');
    }
    return fromHf(hf, model);
  };

  return {
    async forModel(model, store) {
      const spec = model.manifest.tokenizer;
      if (spec.kind !== 'hf-tokenizer') return { ...options.builtin, eosIds: stopTokenIds(model.manifest) };
      const hit = loaded.get(model.id);
      if (hit) {
        loaded.delete(model.id);
        loaded.set(model.id, hit);
        return hit;
      }
      const pending = load(model, spec, store);
      loaded.set(model.id, pending);
      while (loaded.size > maxModels) loaded.delete(loaded.keys().next().value!);
      pending.catch(() => {
        if (loaded.get(model.id) === pending) loaded.delete(model.id);
      });
      return pending;
    },
    forget(modelId) {
      loaded.delete(modelId);
    },
  };
}

/** The EdgeTokenizer over a Hugging Face tokenizer, with the manifest's stop ids. */
function fromHf(hf: HfTokenizer, model: ModelRecord): EdgeTokenizer {
  // The model's embedding may have more rows than the tokenizer has tokens (padding rows): an id
  // past the tokenizer decodes to nothing rather than failing the answer.
  const safe = (d: TokenStreamDecoder): TokenStreamDecoder => ({
    push(id) {
      try {
        return d.push(id);
      } catch (err) {
        if (err instanceof RangeError) return '';
        throw err;
      }
    },
    flush: () => d.flush(),
  });
  return {
    eosIds: stopTokenIds(model.manifest),
    encodePrompt: (text) => modelProblem(model, () => hf.encodePrompt(text)),
    encodeChat(messages, opts) {
      try {
        return modelProblem(model, () => hf.encodeChat(messages, { addGenerationPrompt: true, ...(opts?.tools ? { tools: [...opts.tools] } : {}) }));
      } catch (err) {
        // The template refused the conversation (`raise_exception`, e.g. roles that do not
        // alternate), or the model has no template: about the request, so a 400.
        if (err instanceof ChatTemplateError) throw new ApiError('invalid_request', `messages: ${model.name}: ${err.message}`, 'messages');
        throw err;
      }
    },
    decode(ids) {
      const d = safe(hf.streamingDecoder());
      let text = '';
      for (const id of ids) text += d.push(id);
      return text + d.flush();
    },
    streamingDecoder: () => safe(hf.streamingDecoder()),
  };
}

/** A tokenizer file that fails on some text is the model's problem, not the request's: 503. */
function modelProblem<T>(model: ModelRecord, run: () => T): T {
  try {
    return run();
  } catch (err) {
    if (!(err instanceof TokenizerFileError)) throw err;
    throw new ApiError('no_route', `model ${model.name} cannot be served: its tokenizer failed (${err.message})`, 'model');
  }
}
