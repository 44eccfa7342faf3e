import { pgTable, text } from 'drizzle-orm/pg-core';
import { at, createdAt } from './columns.js';

/** Ticket-signing public keys of the edge, published so agents and SDKs can verify tickets. */
export const edgeKeys = pgTable('edge_keys', {
  id: text('id').primaryKey(),
  /** Raw Ed25519 public key, base64url. */
  publicKey: text('public_key').notNull(),
  createdAt: createdAt(),
  /** Agents stop trusting it from then on. */
  retiredAt: at('retired_at'),
});
