/**
 * The bytes, hash and signature of a job ticket, and the checks on a ticket whose shape is
 * already known (signature, validity window, hop): no zod here, so the SDK's browser bundle can
 * re-verify tickets without a schema library. ticket.ts holds the schemas and re-exports all of
 * this; `verifyTicket` there checks the shape first.
 *
 * @example
 * const signed = await signTicket(edgeKey.privateKey, ticket);
 * const check = await checkSignedTicket(signed, edgeKey.publicKey, Date.now());
 */
import { canonicalJson, type CanonicalValue } from './canonical.js';
import { sha256Hex, utf8 } from './bytes.js';
import { signBytes, verifyBytes } from './keys.js';
import type { JobTicket, RouteHop, SignedTicket } from './ticket.js';

export const TICKET_DOMAIN = 'layernet.ticket/1\n';

export function ticketBytes(ticket: JobTicket): Uint8Array {
  return utf8(TICKET_DOMAIN + canonicalJson(ticket as unknown as CanonicalValue));
}

export function ticketHash(ticket: JobTicket): Promise<string> {
  return sha256Hex(ticketBytes(ticket));
}

export async function signTicket(edgePrivateKey: CryptoKey, ticket: JobTicket): Promise<SignedTicket> {
  return { ticket, signature: await signBytes(edgePrivateKey, ticketBytes(ticket)) };
}

export type TicketCheck =
  | { ok: true; ticket: JobTicket; hash: string }
  | { ok: false; reason: 'malformed' | 'bad_signature' | 'expired' | 'not_yet_valid' | 'wrong_hop' };

/**
 * Checks signature and validity window of a ticket that already passed `signedTicketSchema`
 * (a parse's output: unknown keys stripped, so the signed bytes are exactly the ticket's fields).
 * `expect` optionally checks that `agentId` is on the route, at `hop` when given.
 */
export async function checkSignedTicket(
  signed: SignedTicket,
  edgePublicKey: string,
  now: number,
  expect?: { agentId: string; hop?: number },
  clockSkewMs = 30_000,
): Promise<TicketCheck> {
  const { ticket, signature } = signed;
  if (!(await verifyBytes(edgePublicKey, signature, ticketBytes(ticket)))) return { ok: false, reason: 'bad_signature' };
  if (now > ticket.expiresAt + clockSkewMs || now > ticket.limits.deadline + clockSkewMs) return { ok: false, reason: 'expired' };
  if (now + clockSkewMs < ticket.issuedAt) return { ok: false, reason: 'not_yet_valid' };
  if (expect) {
    const hops = ticket.route.map((h, i) => ({ ...h, i })).filter((h) => h.agentId === expect.agentId);
    if (hops.length === 0 || (expect.hop !== undefined && !hops.some((h) => h.i === expect.hop))) {
      return { ok: false, reason: 'wrong_hop' };
    }
  }
  return { ok: true, ticket, hash: await ticketHash(ticket) };
}

/** Route must cover [0, numLayers) exactly once, in order. */
export function routeCoversModel(route: readonly RouteHop[], numLayers: number): boolean {
  let cursor = 0;
  for (const hop of route) {
    if (hop.layers[0] !== cursor) return false;
    cursor = hop.layers[1];
  }
  return cursor === numLayers;
}
