/**
 * The reaper: the watchdog process `npm start` spawns before anything else, in a session of its
 * own, reading a pipe from start.ts on its stdin (scripts/owned-processes.ts writes it). Node
 * cannot ask Linux to signal its children when it dies (prctl PDEATHSIG), so this process does:
 *
 *   watch-group PGID   a process group start.ts started (each agent, wrangler with its workerd)
 *   forget-group PGID  start.ts stopped it itself
 *
 * When the pipe ends or its parent changes, the reaper sends SIGTERM to every group still
 * watched, SIGKILL to what is left after LAYERNET_REAP_GRACE_MS (default 3000), and exits. After
 * an orderly stop nothing is left to watch; when start.ts died without stopping what it started
 * (SIGKILL, a crash, the OOM killer), this stops it.
 */
import { createInterface } from 'node:readline';
import { groupMembers, signal, waitUntil } from './processes.js';

const GRACE_MS = Number(process.env.LAYERNET_REAP_GRACE_MS ?? 3000);
const groups = new Set<number>();
const parent = process.ppid;
let reaping = false;

const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  const [verb, arg] = line.trim().split(/\s+/);
  const pgid = Number(arg);
  if (!Number.isInteger(pgid) || pgid <= 1) return;
  if (verb === 'watch-group') groups.add(pgid);
  else if (verb === 'forget-group') groups.delete(pgid);
});
lines.on('close', () => void reap());
// A pipe inherited by some other process would never end: the parent's pid is the backstop.
const poll = setInterval(() => {
  if (process.ppid !== parent) void reap();
}, 500);

async function reap(): Promise<void> {
  if (reaping) return;
  reaping = true;
  clearInterval(poll);
  const left = () => [...groups].filter((g) => groupMembers(g).length > 0);
  for (const g of left()) signal(-g, 'SIGTERM');
  if (!(await waitUntil(() => left().length === 0, GRACE_MS))) {
    for (const g of left()) signal(-g, 'SIGKILL');
    await waitUntil(() => left().length === 0, GRACE_MS);
  }
  process.exit(0);
}
