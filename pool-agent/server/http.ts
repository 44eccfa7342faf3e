/** node:http helpers: bounded body reads and the one error envelope. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { AgentError } from './errors.js';

/** Reads the whole body, refusing more than `maxBytes` (413) or a stall past `timeoutMs` (408-ish). */
export function readBody(req: IncomingMessage, maxBytes: number, timeoutMs = 30_000): Promise<Uint8Array> {
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (Number.isFinite(declared) && declared > maxBytes) {
    req.resume();
    return Promise.reject(new AgentError('payload_too_large', `body of ${declared} bytes exceeds ${maxBytes}`));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const timer = setTimeout(() => finish(new AgentError('invalid_request', 'request body timed out')), timeoutMs);
    const finish = (err?: Error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) {
        req.removeAllListeners('data');
        req.resume();
        reject(err);
      } else {
        const out = Buffer.concat(chunks, size);
        resolve(new Uint8Array(out.buffer, out.byteOffset, out.byteLength));
      }
    };
    req.on('data', (c: Buffer) => {
      size += c.byteLength;
      if (size > maxBytes) finish(new AgentError('payload_too_large', `body exceeds ${maxBytes} bytes`));
      else chunks.push(c);
    });
    req.on('end', () => finish());
    req.on('error', (e) => finish(e));
    req.on('aborted', () => finish(new AgentError('invalid_request', 'request aborted')));
  });
}

export async function readJsonBody(req: IncomingMessage, maxBytes: number): Promise<unknown> {
  const bytes = await readBody(req, maxBytes);
  try {
    return JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'));
  } catch {
    throw new AgentError('invalid_json', 'body is not valid JSON');
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

export function sendError(res: ServerResponse, err: AgentError): void {
  const headers: Record<string, string> = {};
  if (err.retryAfter !== undefined) headers['retry-after'] = String(Math.max(1, Math.ceil(err.retryAfter)));
  sendJson(res, err.status, err.toEnvelope(), headers);
}
