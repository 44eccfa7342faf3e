ALTER TABLE "route_blocks" ADD COLUMN "hold_until" timestamp with time zone;--> statement-breakpoint
CREATE INDEX "route_blocks_hold_idx" ON "route_blocks" USING btree ("hold_until");