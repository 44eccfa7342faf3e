/**
 * Breaks a checkpoint written by writeTinyCheckpoint in one of the ways a downloaded or hand-made
 * folder can be broken, for the importer's refusal tests.
 */
import { readFile, rm, stat, truncate, writeFile, open } from 'node:fs/promises';
import { join } from 'node:path';
import { readSafetensorsForTests, writeSafetensors, type SafetensorsEntry } from './hf-safetensors.js';

export type CheckpointDefect =
  | 'missing-tensor'
  | 'wrong-shape'
  | 'truncated'
  | 'bad-header'
  | 'missing-shard'
  | 'unknown-architecture'
  | 'unknown-rope';

const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

async function readJson(path: string): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
}

/** The weight map of a sharded checkpoint, or null for a single model.safetensors. */
async function weightMap(dir: string): Promise<Record<string, string> | null> {
  const index = await readFile(join(dir, 'model.safetensors.index.json'), 'utf8').catch(() => null);
  return index === null ? null : (JSON.parse(index) as { weight_map: Record<string, string> }).weight_map;
}

async function fileOf(dir: string, tensor: string): Promise<string> {
  const map = await weightMap(dir);
  return map ? map[tensor]! : 'model.safetensors';
}

/** Rewrites one safetensors file after `edit` changes its tensor list (metadata kept). */
async function rewrite(path: string, edit: (entries: SafetensorsEntry[]) => SafetensorsEntry[]): Promise<void> {
  const st = await readSafetensorsForTests(path);
  const entries: SafetensorsEntry[] = [...st.tensors].map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape, data: t.data.slice() }));
  await writeSafetensors(path, edit(entries), st.metadata);
}

/**
 * Breaks the checkpoint in `dir` in place. `expect` loosely matches what a good refusal names
 * (the tensor, the file, the unknown value); the exact wording is the importer's.
 * 'missing-shard' needs a sharded checkpoint (shards > 1).
 * @example
 * const { expect: why } = await corruptCheckpoint(dir, 'truncated');
 * await expect(importCheckpoint(dir)).rejects.toThrow(why);
 */
export async function corruptCheckpoint(dir: string, how: CheckpointDefect): Promise<{ dir: string; expect: RegExp }> {
  const configPath = join(dir, 'config.json');
  const config = await readJson(configPath);
  const layers = config.num_hidden_layers as number;
  // Layer 1 rather than 0, so an importer that only checks the first layer is caught.
  const layer = Math.min(1, layers - 1);
  switch (how) {
    case 'unknown-architecture': {
      await writeFile(configPath, JSON.stringify({ ...config, architectures: ['GPT2LMHeadModel'], model_type: 'gpt2' }, null, 2));
      return { dir, expect: /GPT2LMHeadModel|gpt2/ };
    }
    case 'unknown-rope': {
      // Qwen2.5's long-context recipe: a real rope type the importer does not implement.
      const rope = { factor: 4.0, original_max_position_embeddings: 32768, rope_type: 'yarn', type: 'yarn' };
      await writeFile(configPath, JSON.stringify({ ...config, rope_scaling: rope }, null, 2));
      return { dir, expect: /yarn/ };
    }
    case 'missing-tensor': {
      const name = `model.layers.${layer}.mlp.up_proj.weight`;
      const file = await fileOf(dir, name);
      await rewrite(join(dir, file), (entries) => entries.filter((e) => e.name !== name));
      const map = await weightMap(dir);
      if (map) {
        const indexPath = join(dir, 'model.safetensors.index.json');
        const index = await readJson(indexPath);
        delete (index.weight_map as Record<string, string>)[name];
        await writeFile(indexPath, JSON.stringify(index, null, 2));
      }
      return { dir, expect: new RegExp(escape(name)) };
    }
    case 'wrong-shape': {
      const name = `model.layers.${layer}.self_attn.k_proj.weight`;
      const file = await fileOf(dir, name);
      await rewrite(join(dir, file), (entries) =>
        entries.map((e) => {
          if (e.name !== name) return e;
          const [out, inp] = e.shape as [number, number];
          // Transposed: the same bytes and element count, only the header says otherwise: the
          // check must compare shapes, not sizes. With out == in that is no change, so add a row.
          if (out !== inp) return { ...e, shape: [inp, out] };
          const data = new Uint8Array(e.data.length + e.data.length / out);
          data.set(e.data);
          return { ...e, shape: [out + 1, inp], data };
        }),
      );
      return { dir, expect: new RegExp(escape(name)) };
    }
    case 'truncated': {
      const file = await fileOf(dir, 'model.norm.weight');
      const path = join(dir, file);
      await truncate(path, (await stat(path)).size - 16);
      return { dir, expect: new RegExp(escape(file)) };
    }
    case 'bad-header': {
      const file = await fileOf(dir, 'model.embed_tokens.weight');
      const path = join(dir, file);
      const size = (await stat(path)).size;
      const head = Buffer.alloc(8);
      head.writeBigUInt64LE(BigInt(size + 1024));
      const fh = await open(path, 'r+');
      try {
        await fh.write(head, 0, 8, 0);
      } finally {
        await fh.close();
      }
      return { dir, expect: new RegExp(escape(file)) };
    }
    case 'missing-shard': {
      const map = await weightMap(dir);
      if (!map) throw new Error(`${dir}: 'missing-shard' needs a sharded checkpoint (shards > 1)`);
      const files = [...new Set(Object.values(map))].sort();
      const file = files[files.length - 1]!;
      await rm(join(dir, file));
      return { dir, expect: new RegExp(escape(file)) };
    }
  }
}
