import { describe, expect, it } from 'vitest';
import { parseEdgeEnv } from '../../edge/env.js';
import { generateSigningKey } from '../../protocol/keys.js';

describe('edge environment', () => {
  it('names the missing or malformed variable, never its value', async () => {
    const key = await generateSigningKey();
    const good = { DATABASE_URL: 'postgres://u@127.0.0.1:5432/db', EDGE_SIGNING_KEY: key.privateKeyPkcs8, EDGE_KEY_ID: 'edge-1' };
    const ok = parseEdgeEnv({ ...good, KEY_CACHE_TTL_MS: '1000', EDGE_LOCATION: 'fra' });
    expect(ok.ok && ok.config).toMatchObject({ keyCacheTtlMs: 1000, location: 'fra' });

    const missing = parseEdgeEnv({ DATABASE_URL: good.DATABASE_URL, EDGE_KEY_ID: 'edge-1' });
    expect(missing.ok).toBe(false);
    expect(!missing.ok && missing.variables).toEqual(['EDGE_SIGNING_KEY']);
    expect(!missing.ok && missing.message).toContain('EDGE_SIGNING_KEY');

    const noDb = parseEdgeEnv({ EDGE_SIGNING_KEY: good.EDGE_SIGNING_KEY, EDGE_KEY_ID: 'e' });
    expect(!noDb.ok && noDb.variables).toEqual(['DATABASE_URL']);

    const badUrl = parseEdgeEnv({ ...good, DATABASE_URL: 'mysql://secret-password@host/db' });
    expect(!badUrl.ok && badUrl.variables).toEqual(['DATABASE_URL']);
    expect(badUrl.ok).toBe(false);
    expect(!badUrl.ok && badUrl.message).not.toContain('secret-password');

    const badKey = parseEdgeEnv({ ...good, EDGE_SIGNING_KEY: 'short!' });
    expect(badKey.ok).toBe(false);
    expect(!badKey.ok && badKey.message).not.toContain('short!');

    // A TTL above the 5 s revocation bound is refused, not silently used.
    const ttl = parseEdgeEnv({ ...good, KEY_CACHE_TTL_MS: '60000' });
    expect(!ttl.ok && ttl.variables).toEqual(['KEY_CACHE_TTL_MS']);

    const hyper = parseEdgeEnv({ EDGE_SIGNING_KEY: good.EDGE_SIGNING_KEY, EDGE_KEY_ID: 'e', HYPERDRIVE: { connectionString: 'postgres://h/db' } });
    expect(hyper.ok && hyper.databaseUrl).toBe('postgres://h/db');
  });
});
