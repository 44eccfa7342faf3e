import { z } from 'zod';

/**
 * Trust policy: the numbers behind check sampling, reputation, slashing and exclusion. One
 * default for the network; an operator may override fields per pool (parsed with
 * `trustPolicySchema`, so a bad override fails closed). Derivations: docs/trust.md.
 *
 * @example
 * const policy = trustPolicySchema.parse({ ...DEFAULT_TRUST_POLICY, floorRate: 0.05 });
 */
export const trustPolicySchema = z
  .object({
    /** Jobs an agent serves on probation (every job checked). */
    probationJobs: z.number().int().nonnegative().max(1_000_000),
    /** Passed checks needed to leave probation (on top of probationJobs served). */
    probationChecks: z.number().int().nonnegative().max(1_000_000),
    /** Check rate right after probation, at reputation `initialReputation`. */
    ceilingRate: z.number().min(0).max(1),
    /** Lowest check rate, at reputation 1. */
    floorRate: z.number().min(0).max(1),
    /** Floor for agents whose pool holds no stake (nothing to slash: checks are the only deterrent). */
    unstakedFloorRate: z.number().min(0).max(1),
    /** Multiplier over the break-even rate G / (S + G) (docs/trust.md): 2 means twice what makes cheating break even. */
    stakeSafetyFactor: z.number().min(1).max(100),
    /** Reputation of a new agent. */
    initialReputation: z.number().min(0).max(1),
    /** EWMA weights: r <- r + w (target - r). */
    weightJobOk: z.number().min(0).max(1),
    weightJobFailed: z.number().min(0).max(1),
    weightCheckPassed: z.number().min(0).max(1),
    /** A first checker whose accusation a third check dismissed. */
    weightFalseAccusation: z.number().min(0).max(1),
    /** Below this reputation an agent is excluded from routing. */
    exclusionReputation: z.number().min(0).max(1),
    /** Share of stake slashed, by severity. */
    slashFraud: z.number().min(0).max(1),
    slashDisclosureRefused: z.number().min(0).max(1),
    slashFalseAccusation: z.number().min(0).max(1),
    /** Largest share of a model's traffic that unstaked pools may get, set by the operator (0 = none). */
    unstakedTrafficShare: z.number().min(0).max(1),
    /** Third checks attempted before a dispute is voided (no one penalised). */
    disputeMaxAttempts: z.number().int().min(1).max(10),
    /** A dispute not settled within this is voided, ms. */
    disputeTimeoutMs: z.number().int().positive(),
    /**
     * A route whose check failed is not chosen again for this long, ms, and its hops stay on
     * probation as long (docs/trust.md §7); lifted early when the dispute it led to is dismissed
     * or voided. Its accused hop is out of routing for as long as the dispute is open anyway.
     */
    routeBlockMs: z.number().int().positive(),
    /** An open dispute's third check is retried by the scheduled tick at most this often, ms. */
    disputeRetryMs: z.number().int().positive(),
  })
  .refine((p) => p.floorRate <= p.ceilingRate, 'floorRate must not exceed ceilingRate');

export type TrustPolicy = z.infer<typeof trustPolicySchema>;

export const DEFAULT_TRUST_POLICY: TrustPolicy = {
  probationJobs: 20,
  probationChecks: 10,
  ceilingRate: 0.25,
  floorRate: 0.02,
  unstakedFloorRate: 0.1,
  stakeSafetyFactor: 2,
  initialReputation: 0.5,
  weightJobOk: 0.01,
  weightJobFailed: 0.05,
  weightCheckPassed: 0.05,
  weightFalseAccusation: 0.25,
  exclusionReputation: 0.2,
  slashFraud: 1,
  slashDisclosureRefused: 0.5,
  slashFalseAccusation: 0,
  unstakedTrafficShare: 0.1,
  disputeMaxAttempts: 3,
  disputeTimeoutMs: 24 * 60 * 60 * 1000,
  routeBlockMs: 30 * 60 * 1000,
  disputeRetryMs: 60 * 1000,
};

/** Merges a pool's override over a base policy; throws (fail closed) when the result is invalid. */
export function policyFor(base: TrustPolicy, override?: Partial<TrustPolicy> | null): TrustPolicy {
  return override ? trustPolicySchema.parse({ ...base, ...override }) : base;
}
