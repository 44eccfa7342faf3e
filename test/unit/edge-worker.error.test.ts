/**
 * The Worker entry's own failures (edge/worker.ts), outside the app's handlers: a misconfigured
 * edge answers 500 with a request id, and says why in the log under that id, naming the variable
 * and never its value.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import worker from '../../edge/worker.js';

const ctx = { waitUntil: () => undefined, passThroughOnException: () => undefined } as never;

afterEach(() => vi.restoreAllMocks());

describe('edge worker entry', () => {
  it('a misconfigured edge answers 500 and logs why, under the request id, without the secret', async () => {
    const logged: string[] = [];
    vi.spyOn(console, 'error').mockImplementation((line: unknown) => void logged.push(String(line)));
    const env = { DATABASE_URL: 'postgres://u:hunter2-secret@127.0.0.1:1/db', EDGE_KEY_ID: 'e', EDGE_SIGNING_KEY: 'not-a-key-hunter2' };
    const res = await worker.fetch(new Request('http://edge.test/v1/models'), env, ctx);
    expect(res.status).toBe(500);
    const requestId = res.headers.get('x-request-id');
    expect(requestId).toMatch(/^req_/);
    const entry = logged.map((l) => JSON.parse(l) as Record<string, unknown>).find((e) => e.requestId === requestId);
    expect(entry).toMatchObject({ level: 'error', msg: 'edge cannot start: every request answers 500 until this is fixed' });
    expect(String(entry!.error)).toContain('EDGE_SIGNING_KEY');
    expect(logged.join('\n')).not.toContain('hunter2');
  });
});
