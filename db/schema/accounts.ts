import { sql } from 'drizzle-orm';
import { check, pgTable, text, uniqueIndex } from 'drizzle-orm/pg-core';
import { createdAt, id } from './columns.js';

export const ACCOUNT_KINDS = ['user', 'pool-owner', 'operator'] as const;
export type AccountKind = (typeof ACCOUNT_KINDS)[number];

/** Users calling the API and pool owners serving it (one account may be both; `kind` is what it signed up as). */
export const accounts = pgTable(
  'accounts',
  {
    id: id(),
    name: text('name').notNull(),
    email: text('email'),
    kind: text('kind').$type<AccountKind>().notNull().default('user'),
    createdAt: createdAt(),
  },
  (t) => [
    uniqueIndex('accounts_email_key').on(t.email),
    check('accounts_kind_check', sql`${t.kind} in ('user', 'pool-owner', 'operator')`),
  ],
);
