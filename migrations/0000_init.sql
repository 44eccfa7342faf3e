CREATE TABLE "accounts" (
	"id" text PRIMARY KEY DEFAULT gen_random_uuid()::text NOT NULL,
	"name" text NOT NULL,
	"email" text,
	"kind" text DEFAULT 'user' NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "accounts_kind_check" CHECK ("accounts"."kind" in ('user', 'pool-owner', 'operator'))
);
--> statement-breakpoint
CREATE TABLE "api_keys" (
	"id" text PRIMARY KEY DEFAULT gen_random_uuid()::text NOT NULL,
	"account_id" text NOT NULL,
	"prefix" text NOT NULL,
	"hash" text NOT NULL,
	"scopes" text[] NOT NULL,
	"name" text DEFAULT '' NOT NULL,
	"revoked_at" timestamp with time zone,
	"expires_at" timestamp with time zone,
	"requests_per_minute" integer,
	"tokens_per_minute" integer,
	"budget_micro_usd" bigint,
	"spent_micro_usd" bigint DEFAULT 0 NOT NULL,
	"last_used_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "api_keys_hash_check" CHECK ("api_keys"."hash" ~ '^[0-9a-f]{64}$'),
	CONSTRAINT "api_keys_scopes_check" CHECK ("api_keys"."scopes" <@ array['inference', 'pool-owner', 'admin']::text[]),
	CONSTRAINT "api_keys_spent_check" CHECK ("api_keys"."spent_micro_usd" >= 0)
);
--> statement-breakpoint
CREATE TABLE "models" (
	"id" text PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"manifest" jsonb NOT NULL,
	"num_layers" integer NOT NULL,
	"dtype" text NOT NULL,
	"published_by" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "models_id_check" CHECK ("models"."id" ~ '^[0-9a-f]{64}$'),
	CONSTRAINT "models_num_layers_check" CHECK ("models"."num_layers" > 0)
);
--> statement-breakpoint
CREATE TABLE "pools" (
	"id" text PRIMARY KEY DEFAULT gen_random_uuid()::text NOT NULL,
	"owner_account_id" text NOT NULL,
	"name" text NOT NULL,
	"region" text NOT NULL,
	"latitude" double precision,
	"longitude" double precision,
	"stake_micro_usd" bigint DEFAULT 0 NOT NULL,
	"status" text DEFAULT 'active' NOT NULL,
	"allow_unstaked_traffic" boolean DEFAULT true NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "pools_status_check" CHECK ("pools"."status" in ('active', 'suspended')),
	CONSTRAINT "pools_stake_check" CHECK ("pools"."stake_micro_usd" >= 0)
);
--> statement-breakpoint
CREATE TABLE "agents" (
	"id" text PRIMARY KEY DEFAULT gen_random_uuid()::text NOT NULL,
	"pool_id" text NOT NULL,
	"endpoint" text NOT NULL,
	"public_key" text NOT NULL,
	"hardware" jsonb NOT NULL,
	"price_micro_usd_per_mtok" bigint NOT NULL,
	"throughput_tokens_per_s" double precision DEFAULT 0 NOT NULL,
	"status" text DEFAULT 'active' NOT NULL,
	"reputation" double precision DEFAULT 0.5 NOT NULL,
	"probation" boolean DEFAULT false NOT NULL,
	"cooldown_until" timestamp with time zone,
	"last_heartbeat_at" timestamp with time zone,
	"heartbeat_seq" bigint DEFAULT -1 NOT NULL,
	"queue_depth" integer DEFAULT 0 NOT NULL,
	"load" double precision DEFAULT 0 NOT NULL,
	"free_kv_bytes" bigint DEFAULT 0 NOT NULL,
	"active_sessions" integer DEFAULT 0 NOT NULL,
	"ttft_ms_ewma" double precision,
	"per_token_ms_ewma" double precision,
	"failure_rate_ewma" double precision DEFAULT 0 NOT NULL,
	"observations" integer DEFAULT 0 NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"deregistered_at" timestamp with time zone,
	CONSTRAINT "agents_status_check" CHECK ("agents"."status" in ('active', 'draining', 'offline', 'slashed', 'deregistered')),
	CONSTRAINT "agents_reputation_check" CHECK ("agents"."reputation" >= 0 and "agents"."reputation" <= 1),
	CONSTRAINT "agents_price_check" CHECK ("agents"."price_micro_usd_per_mtok" >= 0)
);
--> statement-breakpoint
CREATE TABLE "agent_spans" (
	"agent_id" text NOT NULL,
	"model_id" text NOT NULL,
	"layer_start" integer NOT NULL,
	"layer_end" integer NOT NULL,
	CONSTRAINT "agent_spans_pkey" PRIMARY KEY("agent_id","model_id","layer_start"),
	CONSTRAINT "agent_spans_layers_check" CHECK ("agent_spans"."layer_start" >= 0 and "agent_spans"."layer_start" < "agent_spans"."layer_end")
);
--> statement-breakpoint
CREATE TABLE "observations" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "observations_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"agent_id" text NOT NULL,
	"model_id" text NOT NULL,
	"edge_location" text NOT NULL,
	"ttft_ms" double precision,
	"per_token_ms" double precision,
	"ok" boolean NOT NULL,
	"job_id" text,
	"at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "jobs" (
	"id" text PRIMARY KEY NOT NULL,
	"account_id" text NOT NULL,
	"api_key_id" text NOT NULL,
	"model_id" text NOT NULL,
	"status" text DEFAULT 'running' NOT NULL,
	"finish_reason" text,
	"route" jsonb NOT NULL,
	"attempts" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"token_ids" integer[] DEFAULT '{}'::integer[] NOT NULL,
	"prompt_tokens" integer DEFAULT 0 NOT NULL,
	"completion_tokens" integer DEFAULT 0 NOT NULL,
	"cost_micro_usd" bigint DEFAULT 0 NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"finished_at" timestamp with time zone,
	CONSTRAINT "jobs_status_check" CHECK ("jobs"."status" in ('running', 'completed', 'failed', 'cancelled')),
	CONSTRAINT "jobs_finish_reason_check" CHECK ("jobs"."finish_reason" in ('stop', 'length', 'cancelled', 'error')),
	CONSTRAINT "jobs_tokens_check" CHECK ("jobs"."prompt_tokens" >= 0 and "jobs"."completion_tokens" >= 0 and "jobs"."cost_micro_usd" >= 0)
);
--> statement-breakpoint
CREATE TABLE "usage" (
	"api_key_id" text NOT NULL,
	"window_start" timestamp with time zone NOT NULL,
	"requests" integer DEFAULT 0 NOT NULL,
	"tokens" bigint DEFAULT 0 NOT NULL,
	"cost_micro_usd" bigint DEFAULT 0 NOT NULL,
	CONSTRAINT "usage_pkey" PRIMARY KEY("api_key_id","window_start")
);
--> statement-breakpoint
CREATE TABLE "ledger_entries" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "ledger_entries_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"kind" text NOT NULL,
	"account_id" text,
	"pool_id" text,
	"agent_id" text,
	"job_id" text,
	"amount_micro_usd" bigint DEFAULT 0 NOT NULL,
	"reputation_delta" double precision,
	"reason" text NOT NULL,
	"evidence" jsonb,
	"at" timestamp with time zone NOT NULL,
	CONSTRAINT "ledger_entries_kind_check" CHECK ("ledger_entries"."kind" in ('stake', 'slash', 'reputation'))
);
--> statement-breakpoint
CREATE TABLE "disputes" (
	"id" text PRIMARY KEY DEFAULT gen_random_uuid()::text NOT NULL,
	"job_id" text NOT NULL,
	"agent_id" text NOT NULL,
	"hop" integer,
	"reason" text NOT NULL,
	"status" text DEFAULT 'open' NOT NULL,
	"evidence" jsonb,
	"checker_agent_ids" text[] DEFAULT '{}'::text[] NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"resolved_at" timestamp with time zone,
	CONSTRAINT "disputes_status_check" CHECK ("disputes"."status" in ('open', 'upheld', 'rejected'))
);
--> statement-breakpoint
CREATE TABLE "edge_keys" (
	"id" text PRIMARY KEY NOT NULL,
	"public_key" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"retired_at" timestamp with time zone
);
--> statement-breakpoint
ALTER TABLE "api_keys" ADD CONSTRAINT "api_keys_account_id_accounts_id_fk" FOREIGN KEY ("account_id") REFERENCES "public"."accounts"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "models" ADD CONSTRAINT "models_published_by_accounts_id_fk" FOREIGN KEY ("published_by") REFERENCES "public"."accounts"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "pools" ADD CONSTRAINT "pools_owner_account_id_accounts_id_fk" FOREIGN KEY ("owner_account_id") REFERENCES "public"."accounts"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "agents" ADD CONSTRAINT "agents_pool_id_pools_id_fk" FOREIGN KEY ("pool_id") REFERENCES "public"."pools"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "agent_spans" ADD CONSTRAINT "agent_spans_agent_id_agents_id_fk" FOREIGN KEY ("agent_id") REFERENCES "public"."agents"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "agent_spans" ADD CONSTRAINT "agent_spans_model_id_models_id_fk" FOREIGN KEY ("model_id") REFERENCES "public"."models"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "jobs" ADD CONSTRAINT "jobs_account_id_accounts_id_fk" FOREIGN KEY ("account_id") REFERENCES "public"."accounts"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "jobs" ADD CONSTRAINT "jobs_api_key_id_api_keys_id_fk" FOREIGN KEY ("api_key_id") REFERENCES "public"."api_keys"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "jobs" ADD CONSTRAINT "jobs_model_id_models_id_fk" FOREIGN KEY ("model_id") REFERENCES "public"."models"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "usage" ADD CONSTRAINT "usage_api_key_id_api_keys_id_fk" FOREIGN KEY ("api_key_id") REFERENCES "public"."api_keys"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "disputes" ADD CONSTRAINT "disputes_agent_id_agents_id_fk" FOREIGN KEY ("agent_id") REFERENCES "public"."agents"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "accounts_email_key" ON "accounts" USING btree ("email");--> statement-breakpoint
CREATE UNIQUE INDEX "api_keys_prefix_key" ON "api_keys" USING btree ("prefix");--> statement-breakpoint
CREATE INDEX "api_keys_account_idx" ON "api_keys" USING btree ("account_id");--> statement-breakpoint
CREATE UNIQUE INDEX "models_name_key" ON "models" USING btree ("name");--> statement-breakpoint
CREATE INDEX "pools_owner_idx" ON "pools" USING btree ("owner_account_id");--> statement-breakpoint
CREATE INDEX "pools_region_idx" ON "pools" USING btree ("region");--> statement-breakpoint
CREATE INDEX "agents_pool_idx" ON "agents" USING btree ("pool_id");--> statement-breakpoint
CREATE UNIQUE INDEX "agents_public_key_live_key" ON "agents" USING btree ("public_key") WHERE "agents"."status" <> 'deregistered';--> statement-breakpoint
CREATE INDEX "agents_active_heartbeat_idx" ON "agents" USING btree ("last_heartbeat_at") WHERE "agents"."status" = 'active';--> statement-breakpoint
CREATE INDEX "agent_spans_model_idx" ON "agent_spans" USING btree ("model_id","agent_id","layer_start","layer_end");--> statement-breakpoint
CREATE INDEX "observations_agent_at_idx" ON "observations" USING btree ("agent_id","at");--> statement-breakpoint
CREATE INDEX "observations_at_idx" ON "observations" USING btree ("at");--> statement-breakpoint
CREATE INDEX "jobs_account_created_idx" ON "jobs" USING btree ("account_id","created_at");--> statement-breakpoint
CREATE INDEX "ledger_entries_pool_idx" ON "ledger_entries" USING btree ("pool_id","at");--> statement-breakpoint
CREATE INDEX "ledger_entries_agent_idx" ON "ledger_entries" USING btree ("agent_id","at");--> statement-breakpoint
CREATE INDEX "disputes_agent_idx" ON "disputes" USING btree ("agent_id");--> statement-breakpoint
CREATE INDEX "disputes_job_idx" ON "disputes" USING btree ("job_id");