/** The memory store's model files follow the same contract as the Postgres store's. */
import { describe, it } from 'vitest';
import { createMemoryStore } from '../../edge/store/memory.js';
import { manifestHash } from '../../protocol/manifest.js';
import { checkModelFileStore } from '../support/model-files-contract.js';
import { testManifest } from './edge-fixtures.js';

describe('memory store: model files', () => {
  it('puts, replaces, lists and gets files by model', async () => {
    const store = createMemoryStore();
    const [a, b] = [testManifest(2, 'a'), testManifest(2, 'b')];
    const [idA, idB] = [await manifestHash(a), await manifestHash(b)];
    await store.publishModel({ manifest: a, id: idA, publishedBy: null, at: 1 });
    await store.publishModel({ manifest: b, id: idB, publishedBy: null, at: 1 });
    await checkModelFileStore(store, idA, idB, Date.UTC(2026, 0, 1));
  });
});
