/**
 * `pool-agent register`, for an imported model: the edge tokenizes with the model's own files
 * (tokenizer.json and company, beside manifest.json in the model folder), so the edge must hold
 * them before it serves the model. Asks the edge which it lacks, checks each against the
 * manifest's size and SHA-256 here (a damaged local copy is named, not sent), and uploads it.
 *
 * @example
 * const uploaded = await uploadTokenizerFiles(edge, modelId, manifest, modelDir); // ['tokenizer.json']
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { sha256Hex } from '../../protocol/bytes.js';
import type { Manifest } from '../../protocol/manifest.js';
import { modelFileUploadSchema, ownerModelSchema } from '../../protocol/owner-api.js';
import { CliError } from './args.js';
import type { EdgeClient } from './edge-client.js';

/** Paths uploaded (none for a model of the built-in tokenizer, or when the edge has them all). */
export async function uploadTokenizerFiles(edge: EdgeClient, modelId: string, manifest: Manifest, modelDir: string): Promise<string[]> {
  if (manifest.tokenizer.kind !== 'hf-tokenizer') return [];
  const model = await edge.call('GET', `/v1/owner/models/${encodeURIComponent(modelId)}`, ownerModelSchema);
  const lacking = new Set(model.data.tokenizer_files.filter((f) => !f.uploaded).map((f) => f.path));
  const uploaded: string[] = [];
  for (const file of manifest.tokenizer.files) {
    if (!lacking.has(file.path)) continue;
    const local = join(modelDir, file.path);
    let bytes: Uint8Array;
    try {
      bytes = await readFile(local);
    } catch (err) {
      throw new CliError(`tokenizer file ${file.path} is missing from ${modelDir} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): the manifest lists it and the edge does not have it yet; import the model again`, 1);
    }
    if (bytes.byteLength !== file.bytes) {
      throw new CliError(`tokenizer file ${local} is ${bytes.byteLength} bytes, the manifest says ${file.bytes}: the model folder is damaged; import the model again`, 1);
    }
    const sha = await sha256Hex(bytes);
    if (sha !== file.sha256) {
      throw new CliError(`tokenizer file ${local} has SHA-256 ${sha}, the manifest says ${file.sha256}: the model folder is damaged; import the model again`, 1);
    }
    await edge.upload(`/v1/owner/models/${encodeURIComponent(modelId)}/files/${encodeURIComponent(file.path)}`, modelFileUploadSchema, bytes);
    uploaded.push(file.path);
  }
  return uploaded;
}
