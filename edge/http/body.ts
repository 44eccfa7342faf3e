/**
 * Bounded request body reading: Content-Length is checked first, then the read itself is
 * capped (a body without, or lying about, its length cannot exceed the limit) and timed.
 *
 * @example
 * const body = chatCompletionRequestSchema.parse(await readJsonBody(c.req.raw, 1 << 20, 10_000));
 */
import { z } from 'zod';
import { ApiError } from '../../protocol/errors.js';
import { concatByteList } from '../../protocol/bytes.js';

export async function readBodyBytes(req: Request, maxBytes: number, timeoutMs: number): Promise<Uint8Array> {
  const declared = req.headers.get('content-length');
  if (declared !== null) {
    const n = Number(declared);
    if (!Number.isFinite(n) || n < 0) throw new ApiError('invalid_request', 'invalid Content-Length');
    if (n > maxBytes) throw new ApiError('payload_too_large', `request body is larger than ${maxBytes} bytes`);
  }
  if (!req.body) return new Uint8Array(0);
  const reader = req.body.getReader();
  const parts: Uint8Array[] = [];
  let total = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new ApiError('request_timeout', 'request body not received in time')), timeoutMs);
  });
  try {
    for (;;) {
      const { value, done } = await Promise.race([reader.read(), timeout]);
      if (done) break;
      total += value.byteLength;
      if (total > maxBytes) throw new ApiError('payload_too_large', `request body is larger than ${maxBytes} bytes`);
      parts.push(value);
    }
  } catch (err) {
    await reader.cancel().catch(() => undefined);
    throw err;
  } finally {
    clearTimeout(timer);
  }
  return concatByteList(parts);
}

export async function readJsonBody(req: Request, maxBytes: number, timeoutMs: number): Promise<unknown> {
  const type = req.headers.get('content-type') ?? '';
  if (type && !/^application\/json\b/i.test(type)) throw new ApiError('unsupported_media_type', 'Content-Type must be application/json');
  const bytes = await readBodyBytes(req, maxBytes, timeoutMs);
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    throw new ApiError('invalid_json', 'request body is not valid JSON');
  }
}

/** Parses with a zod schema; the first issue becomes a 400 naming its parameter. */
export function parseWith<T>(schema: z.ZodType<T>, value: unknown): T {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  const param = issue && issue.path.length ? issue.path.map(String).join('.') : null;
  throw new ApiError('invalid_request', issue ? `${param ?? 'body'}: ${issue.message}` : 'invalid request', param);
}
