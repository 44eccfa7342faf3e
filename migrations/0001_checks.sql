ALTER TABLE "agents" ADD COLUMN "jobs_checked" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "agents" ADD COLUMN "checks_passed" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "check_status" text;--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "checks" jsonb DEFAULT '[]'::jsonb NOT NULL;--> statement-breakpoint
ALTER TABLE "jobs" ADD CONSTRAINT "jobs_check_status_check" CHECK ("jobs"."check_status" in ('pass', 'fail', 'inconclusive', 'upheld', 'dismissed', 'voided'));