/*
 * The chaos run at a big scale (test/chaos/chaos.test.ts runs it small in CI). It starts a private
 * embedded PostgreSQL under the temp folder (restarted during the run; the server of
 * DATABASE_URL is never touched) and needs the built CLI: npm run build first.
 *
 *   node --import jiti/register scripts/chaos.ts
 *   CHAOS_SECONDS=600 CHAOS_WORKERS=6 node --import jiti/register scripts/chaos.ts
 *
 * Other knobs: CHAOS_CONCURRENCY, CHAOS_STREAMS, CHAOS_APPENDERS, CHAOS_KILL_EVERY_MS,
 * CHAOS_RESTART_EVERY_MS (0: never), CHAOS_CATCH_UP_MS, CHAOS_LEASE_MS, CHAOS_BLOCK_CHANCE (a handler call blocks its
 * event loop for the lease + 1 s), CHAOS_XID_POWER (the run
 * crosses 10^N transaction ids; default 6, burnt before the run, about a million transactions).
 *
 * Exits 1 when a check is broken.
 */
import { formatReport, runChaos } from '../test/chaos/harness.js';

const num = (name: string, fallback: number) => {
  const v = process.env[name];
  return v === undefined || v === '' ? fallback : Number(v);
};

const report = await runChaos({
  durationMs: num('CHAOS_SECONDS', 180) * 1000,
  workers: num('CHAOS_WORKERS', 5),
  concurrency: num('CHAOS_CONCURRENCY', 4),
  streams: num('CHAOS_STREAMS', 200),
  appenders: num('CHAOS_APPENDERS', 8),
  killEveryMs: num('CHAOS_KILL_EVERY_MS', 5000),
  restartEveryMs: num('CHAOS_RESTART_EVERY_MS', 30_000),
  catchUpMs: num('CHAOS_CATCH_UP_MS', 120_000),
  leaseMs: num('CHAOS_LEASE_MS', 3000),
  xidPower: num('CHAOS_XID_POWER', 6),
  blockChance: num('CHAOS_BLOCK_CHANCE', 0.002),
  keepOnFailure: true,
  log: (line) => console.log(line),
});
console.log(formatReport(report));
process.exitCode = report.problems.length === 0 ? 0 : 1;
