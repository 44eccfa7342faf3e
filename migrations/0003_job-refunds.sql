ALTER TABLE "ledger_entries" DROP CONSTRAINT "ledger_entries_kind_check";--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "refunded_micro_usd" bigint;--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "refunded_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "refund_reason" text;--> statement-breakpoint
CREATE UNIQUE INDEX "ledger_entries_refund_job_key" ON "ledger_entries" USING btree ("job_id") WHERE "ledger_entries"."kind" = 'refund';--> statement-breakpoint
ALTER TABLE "jobs" ADD CONSTRAINT "jobs_refund_check" CHECK (("jobs"."refunded_at" is null and "jobs"."refunded_micro_usd" is null and "jobs"."refund_reason" is null) or ("jobs"."refunded_at" is not null and "jobs"."refunded_micro_usd" >= 0 and "jobs"."refund_reason" is not null));--> statement-breakpoint
ALTER TABLE "ledger_entries" ADD CONSTRAINT "ledger_entries_kind_check" CHECK ("ledger_entries"."kind" in ('stake', 'slash', 'reputation', 'refund'));