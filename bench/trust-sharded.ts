/**
 * Trust on sharded routes with real agents (issue 15): the edge in workerd, the registry, real
 * `pool-agent serve` processes on the tiny model, whole-model checkers of two other owners, and
 * cheating hops (a 3% perturbation of what they hand on or commit to: test/support/partial-cheat.ts,
 * `partial-cheating-serve/`) at the head, middle or tail of 2- and 3-hop routes. One client sends
 * one job after another, never waiting for checks (they run after each answer, as in production).
 *
 * Per check policy (`override`: CHECK_RATE_OVERRIDE=1, every job checked; `normal`: the trust
 * policy's rates, edge/trust/sampling.ts), one network with pools of honest agents (region
 * `pool2`: two agents for each of layers [0,2), [2,4); `pool3`: two for each of [0,1), [1,3),
 * [3,4); hops on 1, 2, 1 onnxruntime threads):
 *
 * 1. per seed and position, a fresh cheater (cheats on every job) joins its pool, cheaper than
 *    its honest twins, so routing prefers it, and other routes through it stay open when one is
 *    blocked: jobs until it is excluded, jobs through it after its first failed check and after
 *    its dispute opened, time to the slash, disclosure bytes and time per hop (a metering proxy
 *    in front of each hop), check time (the checkers' logs);
 * 2. (override) `--honest-jobs` honest jobs over the pools, every one checked: false positives;
 * 3. (normal) per seed and `--sleeper-positions`, a sleeper on a fresh route of its own: it
 *    serves `--sleeper-after` jobs honestly (through probation, every job checked), then cheats on
 *    every job, checked at the post-probation rate: jobs until it is excluded;
 * 4. disputes left open (their third check refused by a checker busy with another check) are
 *    settled by the scheduled tick's retry (`/__scheduled`, once due: `disputeRetryMs`, 60 s).
 *
 *   npm run bench:trust -- [--seeds 5] [--honest-jobs 200] [--positions 2h,2t,3h,3m,3t]
 *     [--sleeper-positions 2h,3m] [--sleeper-after 20] [--max-jobs 120] [--policies override,normal]
 *     [--json FILE]
 */
import { writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { and, eq, inArray } from 'drizzle-orm';
import { disputes, jobs as jobsTable, ledgerEntries, routeBlocks } from '../db/schema/index.js';
import { randomBytes, toBase64Url } from '../protocol/bytes.js';
import { DEFAULT_TRUST_POLICY } from '../edge/trust/policy.js';
import { checkRate } from '../edge/trust/sampling.js';
import { CHEAT_ENV } from '../test/support/cheating-span.js';
import { CHEAT_AFTER_ENV, cheatedJob, type CheatSchedule } from '../test/support/partial-cheat.js';
import { startMeteringProxy, type MeteringProxy } from '../test/support/metering-proxy.js';
import { agentRow, chatJob, type JobRow } from '../test/support/network-jobs.js';
import { otherOwnerToken, startNetwork, type AgentSpec, type NetworkAgent, type TestNetwork } from '../test/support/network.js';

const { values } = parseArgs({
  options: {
    seeds: { type: 'string', default: '5' },
    'honest-jobs': { type: 'string', default: '200' },
    positions: { type: 'string', default: '2h,2t,3h,3m,3t' },
    'sleeper-positions': { type: 'string', default: '2h,3m' },
    'sleeper-after': { type: 'string', default: String(DEFAULT_TRUST_POLICY.probationJobs) },
    'max-jobs': { type: 'string', default: '120' },
    policies: { type: 'string', default: 'override,normal' },
    json: { type: 'string' },
  },
});
const SEEDS = Number(values.seeds);
const HONEST_JOBS = Number(values['honest-jobs']);
const MAX_JOBS = Number(values['max-jobs']);
const SLEEPER_AFTER = Number(values['sleeper-after']);
const list = (s: string | undefined) => (s ? s.split(',').map((x) => x.trim()).filter(Boolean) : []);
type Position = '2h' | '2t' | '3h' | '3m' | '3t';
const POSITIONS = list(values.positions) as Position[];
const SLEEPER_POSITIONS = list(values['sleeper-positions']) as Position[];
const POLICIES = list(values.policies) as ('override' | 'normal')[];
for (const p of [...POSITIONS, ...SLEEPER_POSITIONS]) if (!['2h', '2t', '3h', '3m', '3t'].includes(p)) throw new Error(`unknown position ${p}: 2h, 2t, 3h, 3m or 3t`);
for (const p of POLICIES) if (p !== 'override' && p !== 'normal') throw new Error(`unknown policy ${p}: override or normal`);

const PRELOAD = pathToFileURL(resolve(import.meta.dirname, '../test/support/partial-cheating-serve/preload.mjs')).href;
const PERTURB = { kind: 'perturb', scale: 0.03 } as const;
const DISCLOSURE_PATH = '/v1/checks/inputs';
/** Spans of each route shape, in hop order. */
const SHAPES: Record<2 | 3, [number, number][]> = { 2: [[0, 2], [2, 4]], 3: [[0, 1], [1, 3], [3, 4]] };
const where = (p: Position) => ({ hops: Number(p[0]) as 2 | 3, hop: { h: 0, m: 1, t: Number(p[0]) - 1 }[p[1] as 'h' | 'm' | 't'] });
const PROMPTS = ['Say something about layered networks', 'Write a line about rivers', 'Name three colours', 'Describe a quiet morning', 'What is a span of layers?'];
const started = Date.now();
const LOAD_AT_START = loadavg().map((x) => x.toFixed(1)).join(' ');
const log = (msg: string) => console.error(`[${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${msg}`);

interface Hop {
  agent: NetworkAgent;
  proxy: MeteringProxy;
  layers: [number, number];
}

interface JobRecord {
  jobId: string;
  route: string[];
  sentAt: number;
  ms: number;
  /** The cheater served it and cheated on it. */
  cheated: boolean;
  viaCheater: boolean;
  row?: JobRow;
}

interface CheaterRun {
  policy: 'override' | 'normal';
  kind: 'fresh' | 'sleeper';
  seed: number;
  position: Position;
  jobs: number;
  served: number;
  cheated: number;
  /** Cheated jobs served through it until routing stopped choosing it. */
  cheatedUntilExcluded: number;
  /** Its n-th cheated job was the first whose check failed (null: none failed). */
  firstFailedCheated: number | null;
  afterFirstFail: number;
  afterDispute: number;
  slashed: boolean;
  /** From the end of the job whose check caught it to the slash, ms. */
  msToSlash: number | null;
  /** The route's check rate at its first cheated job (edge/trust/sampling.ts over the hops' registry rows). */
  rateAtFirstCheat: number | null;
  disclosures: { hop: number; bytes: number; ms: number }[];
  checks: { status: string; reason?: string; ms: number; disclosures: boolean }[];
  blamed: { reason?: string; hop?: number; right: boolean } | null;
  /** Jobs no hop cheated on (other routes of the pool; a sleeper's jobs before it cheats), by check status ('none': not checked). */
  honest: Record<string, number>;
  /** Failed checks of jobs no hop cheated on (false positives), and those jobs. */
  honestFailed: number;
  honestFailedJobs: unknown[];
  cheaterId: string;
  /** From its route's first failed check (route blocked) to the dispute against it (out of every route), ms. */
  msFailToDispute: number | null;
  /** Slashed once the scheduled tick retried the open disputes' third checks (null: not needed). */
  slashedAfterTick: boolean | null;
}

const results: { runs: CheaterRun[]; honest: Record<string, unknown>[]; busyRefusals: Record<string, number>; busyRetries: Record<string, number>; honestAgents: { policy: string; agents: number; disputes: number; slashes: number }[]; jobMs: number[] } = {
  runs: [],
  honest: [],
  busyRefusals: {},
  busyRetries: {},
  honestAgents: [],
  jobMs: [],
};

/** Checker log lines `check done`, by job id. */
const checkLogs = new Map<string, { status: string; reason?: string; ms: number; at: number }[]>();
let checkers: NetworkAgent[] = [];
function drainCheckLogs(): void {
  for (const c of checkers) {
    for (const line of c.logs.splice(0)) {
      try {
        const l = JSON.parse(line) as { msg?: string; jobId?: string; status?: string; reason?: string; ms?: number; t?: string };
        if (l.msg !== 'check done' || !l.jobId) continue;
        const list = checkLogs.get(l.jobId) ?? [];
        list.push({ status: l.status!, reason: l.reason, ms: l.ms!, at: Date.parse(l.t!) });
        checkLogs.set(l.jobId, list);
      } catch {
        // Not a JSON log line.
      }
    }
  }
}

/** Every proxy started, closed with its network. */
const proxies: MeteringProxy[] = [];

/** An agent of owner A behind a metering proxy (its registered endpoint). */
async function addHop(net: TestNetwork, spec: AgentSpec & { layers: [number, number] }): Promise<Hop> {
  let proxy: MeteringProxy | undefined;
  const agent = await net.addAgent({
    ...spec,
    endpointFor: async (port) => {
      proxy = await startMeteringProxy(port, [DISCLOSURE_PATH]);
      proxies.push(proxy);
      return proxy.url;
    },
  });
  return { agent, proxy: proxy!, layers: spec.layers };
}

function cheaterSpec(name: string, region: string, layers: [number, number], price: number, schedule: CheatSchedule): AgentSpec & { layers: [number, number] } {
  return {
    name,
    region,
    price,
    layers,
    env: {
      NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import=${PRELOAD}`.trim(),
      [CHEAT_ENV]: JSON.stringify(PERTURB),
      [CHEAT_AFTER_ENV]: String(schedule.afterJobs),
    },
  };
}

/**
 * Waits until the jobs' checks are quiet (no status or entry changed for 2 s; 26 s, the edge's
 * check budget, while one is `inconclusive`, which another checker may still turn) and reads
 * their rows. A job without a status then was not drawn for a check (a check takes well under
 * a second here, a blame with its dispute about one).
 */
async function settleAll(net: TestNetwork, jobs: JobRecord[]): Promise<void> {
  const ids = jobs.map((j) => j.jobId);
  let last = '';
  let stableSince = Date.now();
  const deadline = Date.now() + 120_000;
  for (;;) {
    const rows: JobRow[] = [];
    for (let i = 0; i < ids.length; i += 200) rows.push(...(await net.registry.db.select().from(jobsTable).where(inArray(jobsTable.id, ids.slice(i, i + 200)))));
    const sig = rows.map((r) => `${r.id}:${r.checkStatus}:${(r.checks as unknown[]).length}`).sort().join();
    if (sig !== last) {
      last = sig;
      stableSince = Date.now();
    }
    const quiet = rows.some((r) => r.checkStatus === 'inconclusive') ? 26_000 : 2_000;
    if (Date.now() - stableSince >= quiet || Date.now() > deadline) {
      const byId = new Map(rows.map((r) => [r.id, r]));
      for (const j of jobs) j.row = byId.get(j.jobId);
      break;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  drainCheckLogs();
}

/** Agent ids of each attempt's route (the job row's signed tickets). */
function attemptRoutes(row: JobRow | undefined): string[][] {
  return ((row?.attempts ?? []) as { ticket: { ticket: { route: { agentId: string }[] } } }[]).map((a) => a.ticket.ticket.route.map((h) => h.agentId));
}

/** Whether routing leaves the agent out: slashed, or accused in an open dispute (edge/checks/route-blocks.ts). */
async function excluded(net: TestNetwork, id: string): Promise<boolean> {
  if ((await agentRow(net, id)).status === 'slashed') return true;
  return (await net.registry.db.select().from(disputes).where(and(eq(disputes.agentId, id), eq(disputes.status, 'open')))).length > 0;
}

/** The route's check rate now, from its hops' registry rows (what the edge computes from its candidates). */
async function routeRate(net: TestNetwork, route: string[]): Promise<number> {
  let rate = 0;
  for (const id of route) {
    const a = await agentRow(net, id);
    const open = (await net.registry.db.select().from(disputes).where(and(eq(disputes.agentId, id), eq(disputes.status, 'open')))).length > 0;
    rate = Math.max(rate, checkRate({ jobsServed: a.observations, checksPassed: a.checksPassed, reputation: a.reputation, stakeMicroUsd: 0, probation: a.probation, disputeOpen: open }));
  }
  return rate;
}

/**
 * Sends jobs to `region` one after another until the cheater is out of routing (slashed, or
 * accused in an open dispute) and two more jobs went elsewhere, its region has no route left,
 * or `maxJobs`; then measures the run.
 */
async function runCheater(
  net: TestNetwork,
  opts: { policy: 'override' | 'normal'; kind: 'fresh' | 'sleeper'; seed: number; position: Position; region: string; cheater: Hop; hops: Hop[]; schedule: CheatSchedule; maxJobs: number },
): Promise<CheaterRun> {
  const { cheater } = opts;
  const jobs: JobRecord[] = [];
  let order = 0;
  let after = 0;
  let rateAtFirstCheat: number | null = null;
  for (let n = 0; n < opts.maxJobs; n++) {
    const job = await chatJob(net, { region: opts.region, seed: opts.seed * 1000 + n, prompt: PROMPTS[(opts.seed + n) % PROMPTS.length] });
    if (!job.ok) {
      if (job.status === 503) break; // no route left in the region: the cheater's route is blocked, it is out
      throw new Error(`job refused: ${job.status} ${job.code} ${job.message}`);
    }
    results.jobMs.push(job.ms);
    const viaCheater = job.route.includes(cheater.agent.id);
    const cheated = viaCheater && cheatedJob(opts.schedule, ++order, job.jobId);
    if (cheated && rateAtFirstCheat === null) rateAtFirstCheat = opts.policy === 'override' ? 1 : await routeRate(net, job.route);
    jobs.push({ jobId: job.jobId, route: job.route, sentAt: job.sentAt, ms: job.ms, cheated, viaCheater });
    if ((await excluded(net, cheater.agent.id)) && ++after > 2) break;
  }
  await settleAll(net, jobs);
  drainEdgeLogs(net, opts.policy);
  // A job whose earlier attempt went through the cheater (a failover) was served by it too.
  for (const j of jobs) {
    if (j.viaCheater || !attemptRoutes(j.row).some((r) => r.includes(cheater.agent.id))) continue;
    j.viaCheater = true;
    j.cheated = opts.schedule.afterJobs === 0;
  }
  const served = jobs.filter((j) => j.viaCheater);
  const cheatedJobs = served.filter((j) => j.cheated);
  const failed = (j: JobRecord) => j.row?.checkStatus === 'fail' || j.row?.checkStatus === 'upheld';
  const firstFailedIdx = cheatedJobs.findIndex(failed);
  const honestFailed = jobs.filter((j) => !j.cheated && j.row?.checkStatus && !['pass', 'inconclusive'].includes(j.row.checkStatus));
  const blocks = await net.registry.db.select().from(routeBlocks).where(inArray(routeBlocks.jobId, jobs.map((j) => j.jobId)));
  const cheaterBlocks = blocks.filter((b) => b.route.includes(cheater.agent.id));
  const firstFailAt = cheaterBlocks.length ? Math.min(...cheaterBlocks.map((b) => b.createdAt.getTime())) : null;
  const dispute = (await net.registry.db.select().from(disputes).where(eq(disputes.agentId, cheater.agent.id)))[0];
  const slash = (await net.registry.db.select().from(ledgerEntries).where(and(eq(ledgerEntries.agentId, cheater.agent.id), eq(ledgerEntries.kind, 'slash'))))[0];
  // Disclosures and checks of the first job whose check failed (the one that led to the dispute).
  const caught = firstFailedIdx >= 0 ? cheatedJobs[firstFailedIdx]! : undefined;
  const disclosures = caught
    ? opts.hops.flatMap((h) => {
        const hop = caught.route.indexOf(h.agent.id);
        const x = h.proxy.exchanges.find((e) => e.at >= caught.sentAt);
        return hop >= 0 && x ? [{ hop, bytes: x.responseBytes, ms: x.ms }] : [];
      })
    : [];
  const checks = caught ? [...(checkLogs.get(caught.jobId) ?? [])].sort((x, y) => x.at - y.at).map((c, i) => ({ status: c.status, ...(c.reason ? { reason: c.reason } : {}), ms: c.ms, disclosures: i > 0 })) : [];
  const named = caught
    ? (caught.row?.checks as { kind: string; disclosedHops?: number[]; verdict?: { verdict: { reason?: string; hop?: number; agentId?: string } } }[]).find((e) => e.kind === 'check' && e.disclosedHops)
    : undefined;
  return {
    policy: opts.policy,
    kind: opts.kind,
    seed: opts.seed,
    position: opts.position,
    jobs: jobs.length,
    served: served.length,
    cheated: cheatedJobs.length,
    cheatedUntilExcluded: cheatedJobs.length,
    firstFailedCheated: firstFailedIdx >= 0 ? firstFailedIdx + 1 : null,
    afterFirstFail: firstFailAt === null ? 0 : served.filter((j) => j.sentAt > firstFailAt).length,
    afterDispute: dispute ? served.filter((j) => j.sentAt > dispute.createdAt.getTime()).length : 0,
    slashed: (await agentRow(net, cheater.agent.id)).status === 'slashed',
    msToSlash: slash && caught ? slash.at.getTime() - (caught.sentAt + caught.ms) : null,
    rateAtFirstCheat,
    disclosures,
    checks,
    honest: countBy(jobs.filter((j) => !j.cheated).map((j) => j.row?.checkStatus ?? 'none')),
    honestFailed: honestFailed.length,
    honestFailedJobs: honestFailed.map((j) => ({ jobId: j.jobId, route: j.route, attempts: attemptRoutes(j.row), status: j.row?.checkStatus, checks: JSON.stringify(j.row?.checks).slice(0, 4000) })),
    cheaterId: cheater.agent.id,
    msFailToDispute: dispute && firstFailAt !== null ? dispute.createdAt.getTime() - firstFailAt : null,
    slashedAfterTick: null,
    blamed: named?.verdict ? { reason: named.verdict.verdict.reason, hop: named.verdict.verdict.hop, right: named.verdict.verdict.agentId === cheater.agent.id } : null,
  };
}

/** Honest jobs over the pools, every one checked: how many pass, fail, stay inconclusive. */
async function honestPhase(net: TestNetwork, pools: Record<string, Hop[]>, count: number): Promise<void> {
  const jobs: (JobRecord & { region: string })[] = [];
  const regions = Object.keys(pools);
  for (let n = 0; n < count; n++) {
    const region = regions[n % regions.length]!;
    const job = await chatJob(net, { region, seed: n, prompt: PROMPTS[n % PROMPTS.length] });
    if (!job.ok) throw new Error(`honest job refused: ${job.status} ${job.code} ${job.message}`);
    results.jobMs.push(job.ms);
    jobs.push({ jobId: job.jobId, route: job.route, sentAt: job.sentAt, ms: job.ms, cheated: false, viaCheater: false, region });
    if (n % 50 === 49) {
      log(`honest jobs: ${n + 1}/${count}`);
      drainEdgeLogs(net, 'override');
    }
  }
  await settleAll(net, jobs);
  for (const region of regions) {
    const mine = jobs.filter((j) => j.region === region);
    const by = (s: string | null) => mine.filter((j) => (j.row?.checkStatus ?? null) === s).length;
    const passMs = mine.flatMap((j) => (checkLogs.get(j.jobId) ?? []).filter((c) => c.status === 'pass').map((c) => c.ms));
    results.honest.push({
      region,
      hops: pools[region]![0]!.layers[1] === 2 ? 2 : 3,
      jobs: mine.length,
      routes: new Set(mine.map((j) => j.route.join())).size,
      pass: by('pass'),
      fail: by('fail') + by('upheld') + by('dismissed') + by('voided'),
      inconclusive: by('inconclusive'),
      unchecked: by(null),
      checkMsMedian: median(passMs),
    });
  }
}

/**
 * Disputes left open (a third check refused by a checker busy with another check) are retried
 * by the scheduled tick once due: waits until then, runs the tick, and reads who is slashed now.
 */
async function settleOpenDisputes(net: TestNetwork, runs: CheaterRun[]): Promise<void> {
  // Only those of cheaters not slashed yet (a later cheated job may have opened a second dispute against a slashed one).
  const ids = runs.filter((r) => !r.slashed).map((r) => r.cheaterId);
  if (!ids.length) return;
  for (let pass = 0; pass < 3; pass++) {
    const open = await net.registry.db.select().from(disputes).where(and(inArray(disputes.agentId, ids), eq(disputes.status, 'open')));
    if (!open.length) break;
    const due = Math.max(...open.map((d) => d.retryAfter?.getTime() ?? 0));
    const wait = Math.min(70_000, Math.max(0, due - Date.now() + 500));
    log(`${open.length} dispute(s) open: the scheduled tick retries their third check in ${(wait / 1000).toFixed(0)} s`);
    await new Promise((r) => setTimeout(r, wait));
    await net.tick();
  }
  for (const r of runs) if (!r.slashed) r.slashedAfterTick = (await agentRow(net, r.cheaterId)).status === 'slashed';
}

/** Checks the edge could not place: a checker still answered 503 (busy with another check) after the edge's retries, by policy. */
const busyRefusals = results.busyRefusals;
/** Times the edge asked a busy checker again after a short wait, by policy. */
const busyRetries = results.busyRetries;
function drainEdgeLogs(net: TestNetwork, policy: string): void {
  for (const line of net.edgeLogs.splice(0)) {
    if (line.includes('checker refused') && line.includes('"status":503')) busyRefusals[policy] = (busyRefusals[policy] ?? 0) + 1;
    if (line.includes('checker busy: asking again shortly')) busyRetries[policy] = (busyRetries[policy] ?? 0) + 1;
  }
}

function countBy(xs: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of xs) out[x] = (out[x] ?? 0) + 1;
  return out;
}

function median(xs: number[]): number | null {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function withNetwork(policy: 'override' | 'normal'): Promise<void> {
  log(`network: policy ${policy}`);
  const honestIds: string[] = [];
  const net = await startNetwork({ agents: [], edgeVars: { CHECK_SECRET: toBase64Url(randomBytes(32)), ...(policy === 'override' ? { CHECK_RATE_OVERRIDE: '1' } : {}) } });
  try {
    checkers = [
      await net.addAgent({ name: 'checker-b', region: 'us-east', price: 5, ownerToken: await otherOwnerToken(net, 'owner-b') }),
      await net.addAgent({ name: 'checker-c', region: 'ap-south', price: 6, ownerToken: await otherOwnerToken(net, 'owner-c') }),
    ];
    // Honest pools: two agents per span; hop i of a pool runs on 1 + (i % 2) threads.
    const pools: Record<string, Hop[]> = {};
    for (const hops of [2, 3] as const) {
      const region = `pool${hops}`;
      pools[region] = [];
      for (const [i, layers] of SHAPES[hops].entries()) {
        for (const twin of ['a', 'b']) {
          pools[region].push(await addHop(net, { name: `${region}-${i}${twin}`, region, price: 0.01, layers, serveArgs: ['--threads', String(1 + (i % 2))] }));
        }
      }
    }
    honestIds.push(...Object.values(pools).flat().map((h) => h.agent.id));
    await net.waitForAgents(net.agents.length);
    log(`network up: ${net.agents.length} agents`);

    for (let seed = 1; seed <= SEEDS; seed++) {
      for (const position of POSITIONS) {
        const { hops, hop } = where(position);
        const region = `pool${hops}`;
        const schedule = { rate: 1, afterJobs: 0 };
        const cheater = await addHop(net, cheaterSpec(`cheat-${policy}-${seed}-${position}`, region, SHAPES[hops][hop]!, 0.001, schedule));
        await net.waitForAgents(net.agents.length);
        const run = await runCheater(net, { policy, kind: 'fresh', seed, position, region, cheater, hops: [...pools[region]!, cheater], schedule, maxJobs: MAX_JOBS });
        results.runs.push(run);
        log(`${policy} fresh seed ${seed} ${position}: served ${run.served}, first failed cheated job ${run.firstFailedCheated}, after fail ${run.afterFirstFail}, after dispute ${run.afterDispute}, slashed ${run.slashed}`);
        await cheater.agent.kill();
        await cheater.proxy.close();
      }
    }

    if (policy === 'normal') {
      for (let seed = 1; seed <= SEEDS; seed++) {
        for (const position of SLEEPER_POSITIONS) {
          const { hops, hop } = where(position);
          // A fresh route of its own: hops that were on a failed route stay on probation (rate 1) for 30 min.
          const region = `sleeper-${seed}-${position}`;
          const schedule = { rate: 1, afterJobs: SLEEPER_AFTER };
          const route: Hop[] = [];
          for (const [i, layers] of SHAPES[hops].entries()) {
            route.push(
              i === hop
                ? await addHop(net, cheaterSpec(`sleeper-${seed}-${position}`, region, layers, 0.01, schedule))
                : await addHop(net, { name: `${region}-${i}`, region, price: 0.01, layers, serveArgs: ['--threads', String(1 + (i % 2))] }),
            );
          }
          honestIds.push(...route.filter((_, i) => i !== hop).map((h) => h.agent.id));
          await net.waitForAgents(net.agents.length);
          const run = await runCheater(net, { policy, kind: 'sleeper', seed, position, region, cheater: route[hop]!, hops: route, schedule, maxJobs: SLEEPER_AFTER + MAX_JOBS });
          results.runs.push(run);
          log(`sleeper seed ${seed} ${position}: served ${run.served} (${run.cheated} cheated), rate at first cheat ${run.rateAtFirstCheat}, first failed cheated job ${run.firstFailedCheated}, slashed ${run.slashed}`);
          for (const h of route) {
            await h.agent.kill();
            await h.proxy.close();
          }
        }
      }
    }
    // After the cheaters: their open disputes' retries fall due meanwhile (disputeRetryMs, 60 s).
    if (policy === 'override' && HONEST_JOBS > 0) await honestPhase(net, pools, HONEST_JOBS);
    await settleOpenDisputes(net, results.runs.filter((r) => r.policy === policy));
    drainEdgeLogs(net, policy);
    results.honestAgents.push({
      policy,
      agents: honestIds.length,
      disputes: (await net.registry.db.select().from(disputes).where(inArray(disputes.agentId, honestIds))).length,
      slashes: (await net.registry.db.select().from(ledgerEntries).where(and(inArray(ledgerEntries.agentId, honestIds), eq(ledgerEntries.kind, 'slash')))).length,
    });
  } finally {
    drainCheckLogs();
    await net.close();
    for (const p of proxies.splice(0)) await p.close();
  }
}

for (const policy of POLICIES) await withNetwork(policy);

// ---- Report
const fmt = (x: number | null | undefined, d = 0) => (x === null || x === undefined ? '—' : x.toFixed(d));
const stat = (xs: (number | null)[], d = 0) => {
  const got = xs.filter((x): x is number => x !== null);
  if (!got.length) return '—';
  const missing = xs.length - got.length;
  return `${fmt(median(got), d)} / ${fmt(Math.max(...got), d)}${missing ? ` (${missing} without)` : ''}`;
};
console.log(
  `\ntrust on sharded routes: ${SEEDS} seeds, tiny model, 12-token answers, ${results.jobMs.length} client jobs (median ${fmt(median(results.jobMs))} ms each), ${Math.round((Date.now() - started) / 1000)} s, load average ${LOAD_AT_START} at the start, ${loadavg().map((x) => x.toFixed(1)).join(' ')} at the end`,
);
console.log('\nCheaters (3% perturbation), median / max over seeds:');
console.log('| policy | cheater | position | rate at 1st cheat | cheated jobs until excluded | nth cheated job 1st failed | through it after 1st failed check (sum) | ms from 1st failed check to dispute | after dispute opened (sum) | blame right | slashed (+ after the tick) | ms to slash |');
console.log('|---|---|---|---|---|---|---|---|---|---|---|---|');
const groups = new Map<string, CheaterRun[]>();
for (const r of results.runs) {
  const k = `${r.policy}|${r.kind}|${r.position}`;
  groups.set(k, [...(groups.get(k) ?? []), r]);
}
for (const [k, runs] of groups) {
  const [policy, kind, position] = k.split('|');
  const rates = [...new Set(runs.map((r) => fmt(r.rateAtFirstCheat, 2)))].join(', ');
  console.log(
    `| ${policy} | ${kind} | ${position} | ${rates} | ${stat(runs.map((r) => (r.firstFailedCheated !== null ? r.cheatedUntilExcluded : null)))} | ${stat(runs.map((r) => r.firstFailedCheated))} | ${runs.reduce((a, r) => a + r.afterFirstFail, 0)} | ${stat(runs.map((r) => r.msFailToDispute))} | ${runs.reduce((a, r) => a + r.afterDispute, 0)} | ${runs.filter((r) => r.blamed?.right).length}/${runs.length} | ${runs.filter((r) => r.slashed).length}/${runs.length}${runs.some((r) => r.slashedAfterTick) ? ` (+${runs.filter((r) => r.slashedAfterTick).length})` : ''} | ${stat(runs.map((r) => r.msToSlash))} |`,
  );
}
console.log('\nPer-hop blame of the first failed job (fresh cheaters), median over seeds and policies:');
console.log('| position | disclosure bytes per hop (head..tail) | disclosure ms per hop | 1st check ms (route) | blame check ms (with disclosures) | third check ms |');
console.log('|---|---|---|---|---|---|');
for (const position of POSITIONS) {
  const runs = results.runs.filter((r) => r.kind === 'fresh' && r.position === position && r.disclosures.length);
  if (!runs.length) continue;
  const n = where(position).hops;
  const per = (f: (d: CheaterRun['disclosures'][number]) => number) => Array.from({ length: n }, (_, h) => fmt(median(runs.flatMap((r) => r.disclosures.filter((d) => d.hop === h).map(f))), 1)).join(' / ');
  const nth = (i: number) => fmt(median(runs.flatMap((r) => (r.checks[i] ? [r.checks[i]!.ms] : []))));
  console.log(`| ${position} | ${per((d) => d.bytes)} | ${per((d) => d.ms)} | ${nth(0)} | ${nth(1)} | ${nth(2)} |`);
}
console.log('\nHonest multi-hop jobs (no hop cheated on them), by check status:');
console.log('| where | jobs | distinct routes | pass | fail (false positive) | inconclusive | not checked | check ms (median) |');
console.log('|---|---|---|---|---|---|---|---|');
for (const h of results.honest) {
  console.log(`| override, honest pool, ${h.hops} hops | ${h.jobs} | ${h.routes} | ${h.pass} | ${h.fail} | ${h.inconclusive} | ${h.unchecked} | ${fmt(h.checkMsMedian as number | null)} |`);
}
for (const [policy, kind] of [['override', 'fresh'], ['normal', 'fresh'], ['normal', 'sleeper']] as const) {
  const runs = results.runs.filter((r) => r.policy === policy && r.kind === kind);
  if (!runs.length) continue;
  const sum = (k: string) => runs.reduce((a, r) => a + (r.honest[k] ?? 0), 0);
  const jobs = runs.reduce((a, r) => a + Object.values(r.honest).reduce((x, y) => x + y, 0), 0);
  console.log(`| ${policy}, ${kind} cheater runs | ${jobs} | | ${sum('pass')} | ${runs.reduce((a, r) => a + r.honestFailed, 0)} | ${sum('inconclusive')} | ${sum('none')} | |`);
}
for (const policy of new Set([...Object.keys(busyRefusals), ...Object.keys(busyRetries)])) {
  console.log(`${policy}: ${busyRetries[policy] ?? 0} times a busy checker (503) was asked again, ${busyRefusals[policy] ?? 0} checks given up on a busy checker`);
}
for (const h of results.honestAgents) console.log(`${h.policy}: ${h.agents} honest agents on multi-hop routes: ${h.disputes} disputes against them, ${h.slashes} slashes`);
if (values.json) await writeFile(values.json, JSON.stringify(results, null, 1));
