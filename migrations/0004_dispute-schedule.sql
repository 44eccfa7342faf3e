CREATE TABLE "route_blocks" (
	"id" text PRIMARY KEY DEFAULT gen_random_uuid()::text NOT NULL,
	"model_id" text NOT NULL,
	"route" text[] NOT NULL,
	"head_agent_id" text NOT NULL,
	"job_id" text NOT NULL,
	"reason" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"until" timestamp with time zone NOT NULL
);
--> statement-breakpoint
ALTER TABLE "disputes" ADD COLUMN "check_request" jsonb;--> statement-breakpoint
ALTER TABLE "disputes" ADD COLUMN "retry_after" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "disputes" ADD COLUMN "retry_note" jsonb;--> statement-breakpoint
ALTER TABLE "route_blocks" ADD CONSTRAINT "route_blocks_model_id_models_id_fk" FOREIGN KEY ("model_id") REFERENCES "public"."models"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "route_blocks" ADD CONSTRAINT "route_blocks_head_agent_id_agents_id_fk" FOREIGN KEY ("head_agent_id") REFERENCES "public"."agents"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "route_blocks_head_idx" ON "route_blocks" USING btree ("head_agent_id","until");--> statement-breakpoint
CREATE INDEX "route_blocks_until_idx" ON "route_blocks" USING btree ("until");--> statement-breakpoint
CREATE INDEX "route_blocks_job_idx" ON "route_blocks" USING btree ("job_id");--> statement-breakpoint
CREATE INDEX "disputes_retry_idx" ON "disputes" USING btree ("retry_after") WHERE "disputes"."status" = 'open';