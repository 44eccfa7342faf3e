CREATE TABLE "model_files" (
	"model_id" text NOT NULL,
	"path" text NOT NULL,
	"sha256" text NOT NULL,
	"bytes" integer NOT NULL,
	"content" "bytea" NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "model_files_pkey" PRIMARY KEY("model_id","path"),
	CONSTRAINT "model_files_path_check" CHECK ("model_files"."path" ~ '^[A-Za-z0-9._-]{1,128}$'),
	CONSTRAINT "model_files_sha256_check" CHECK ("model_files"."sha256" ~ '^[0-9a-f]{64}$'),
	CONSTRAINT "model_files_bytes_check" CHECK ("model_files"."bytes" = octet_length("model_files"."content"))
);
--> statement-breakpoint
ALTER TABLE "model_files" ADD CONSTRAINT "model_files_model_id_models_id_fk" FOREIGN KEY ("model_id") REFERENCES "public"."models"("id") ON DELETE cascade ON UPDATE no action;