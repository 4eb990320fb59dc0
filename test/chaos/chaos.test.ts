import { describe, expect, it } from 'vitest';
import { formatReport, runChaos } from './harness.js';

// CI scale: about 40 s. The big run is scripts/chaos.ts (CHAOS_SECONDS, CHAOS_WORKERS, ...).
describe('chaos', () => {
  it('loses nothing, keeps every stream in order and leaves no lease through kills, restarts and an xid crossing', async () => {
    const lines: string[] = [];
    const report = await runChaos({
      durationMs: 15_000,
      workers: 3,
      concurrency: 3,
      streams: 25,
      appenders: 4,
      killEveryMs: 4000,
      restartEveryMs: 7000,
      catchUpMs: 20_000,
      leaseMs: 2000,
      blockChance: 0.01,
      log: (l) => lines.push(l),
    });
    console.log(formatReport(report));
    expect(report.figures.workerKills).toBeGreaterThan(0);
    expect(report.figures.databaseRestarts).toBeGreaterThan(0);
    // The problems come first: CI's summary shows only the first lines of a failure.
    expect(
      report.problems,
      `${report.problems.join(' | ')}\n${lines.join('\n')}\n${formatReport(report)}`,
    ).toEqual([]);
  }, 100_000);
});
