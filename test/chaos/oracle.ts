import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type pg from 'pg';
import { SCHEMA } from './workerConfig.js';

/*
 * The chaos run's oracle: what must hold once the chaos stopped, every worker caught up and
 * stopped, and es tail was given time to print. Each broken check is one line in `problems`.
 */

export interface RunOutcome {
  pool: pg.Pool;
  /** Where the workers wrote their call files (see workerConfig.ts). */
  dir: string;
  /** Every stream of the category with its head position. */
  heads: Map<string, number>;
  /** Ids of messages whose append (or commit) was acknowledged. */
  acked: Set<string>;
  /** Ids of messages appended in transactions that were rolled back. */
  rolledBack: Set<string>;
  /** What `es tail --json` printed. */
  tailOutput: string;
  /** When the harness saw each SIGKILLed worker gone (process.hrtime.bigint()). */
  kills: { at: bigint; pid: number }[];
  /**
   * The wall clock's offset from the monotonic one (Date.now() in ns minus process.hrtime.bigint()),
   * measured before and after the run: maps the server's lease grants onto the handlers' clock.
   */
  clock: { before: bigint; after: bigint };
}

/**
 * Per stream, in call order: a call may repeat an earlier position (a re-delivery after a crash)
 * but never jump past the next one; every position 1..head must be handled.
 */
function checkCalls(
  sub: string,
  rows: { stream: string; pos: number }[],
  heads: Map<string, number>,
): { problems: string[]; redelivered: number } {
  const problems: string[] = [];
  const max = new Map<string, number>();
  const seen = new Set<string>();
  let redelivered = 0;
  for (const { stream, pos } of rows) {
    const m = max.get(stream) ?? 0;
    if (pos > m + 1) problems.push(`${sub}: ${stream}#${pos} handled before #${m + 1}`);
    const key = `${stream}#${pos}`;
    if (seen.has(key)) redelivered++;
    seen.add(key);
    max.set(stream, Math.max(m, pos));
  }
  let lost = 0;
  for (const [stream, head] of heads) {
    for (let p = 1; p <= head; p++) if (!seen.has(`${stream}#${p}`)) lost++;
  }
  if (lost > 0) problems.push(`${sub}: ${lost} messages never handled`);
  return { problems: problems.slice(0, 20), redelivered };
}

export async function checkOutcome(
  r: RunOutcome,
): Promise<{ problems: string[]; figures: Record<string, number> }> {
  const { pool, heads, acked, rolledBack } = r;
  const problems: string[] = [];
  const figures: Record<string, number> = {};
  const printed = new Map<string, number>();
  let unparsable = 0;
  for (const line of r.tailOutput.split('\n').filter(Boolean)) {
    try {
      const j = JSON.parse(line) as { id: string };
      printed.set(j.id, (printed.get(j.id) ?? 0) + 1);
    } catch {
      unparsable++;
    }
  }

  const { rows: stored } = await pool.query<{ id: string }>(
    `SELECT id::text AS id FROM ${SCHEMA}.messages WHERE stream_name LIKE 'c-%'`,
  );
  const storedIds = new Set(stored.map((r) => r.id));
  const lostAppends = [...acked].filter((id) => !storedIds.has(id)).length;
  if (lostAppends > 0) problems.push(`store: ${lostAppends} acknowledged appends are not in the log`);
  const ghosts = [...rolledBack].filter((id) => storedIds.has(id)).length;
  if (ghosts > 0) problems.push(`store: ${ghosts} rolled-back messages are in the log`);
  const { rows: gapRows } = await pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM (SELECT stream_name FROM ${SCHEMA}.messages WHERE stream_name LIKE 'c-%'
       GROUP BY stream_name HAVING max(stream_position) <> count(*)) g`,
  );
  if (gapRows[0]!.n > 0) problems.push(`store: ${gapRows[0]!.n} streams have gaps in their positions`);

  const tailMissing = [...storedIds].filter((id) => !printed.has(id)).length;
  const tailTwice = [...printed.values()].filter((n) => n > 1).length;
  const tailForeign = [...printed.keys()].filter((id) => !storedIds.has(id)).length;
  if (tailMissing > 0) {
    const missing = [...storedIds].filter((id) => !printed.has(id)).slice(0, 200);
    const { rows } = await pool.query<{ txs: string }>(
      `SELECT string_agg(DISTINCT transaction_id::text, ' ') AS txs FROM ${SCHEMA}.messages WHERE id = ANY($1::uuid[])`,
      [missing],
    );
    problems.push(
      `es tail: ${tailMissing} of ${storedIds.size} messages never printed (their transaction ids: ${rows[0]?.txs})`,
    );
  }
  if (tailTwice > 0) problems.push(`es tail: ${tailTwice} messages printed more than once`);
  if (tailForeign + unparsable > 0)
    problems.push(`es tail: ${tailForeign} unknown messages and ${unparsable} unparsable lines printed`);

  for (const sub of ['rec', 'bat']) {
    const { rows } = await pool.query<{ stream: string; pos: number }>(
      `SELECT stream, pos FROM ${SCHEMA}.calls WHERE sub = $1 ORDER BY seq`,
      [sub],
    );
    const c = checkCalls(sub, rows, heads);
    problems.push(...c.problems);
    figures[`${sub}Calls`] = rows.length;
    figures[`${sub}Redeliveries`] = c.redelivered;
  }
  {
    // Two holders of one stream at once. A holder whose handler blocks its event loop past the lease
    // cannot be interrupted: the call it is in may still run when the next holder starts (counted
    // as `inFlightOverlaps`, the README's stated limit). What must never happen is a holder starting
    // a call of the stream after another holder was granted the stream (a claim, logged by the
    // server with its clock in lease_grants) since its own grant: its lease had ended by then, and
    // its own deadline before that.
    type Ev = { at: bigint; ev: string; stream: string; pos: number; pid: number };
    const events: Ev[] = r.kills.map((k) => ({ at: k.at, ev: 'kill', stream: '', pos: 0, pid: k.pid }));
    for (const file of readdirSync(r.dir).filter((f) => f.startsWith('calls-'))) {
      for (const line of readFileSync(join(r.dir, file), 'utf8').split('\n').filter(Boolean)) {
        const [at, ev, stream, pos, pid] = line.split(' ');
        events.push({ at: BigInt(at!), ev: ev!, stream: stream!, pos: Number(pos), pid: Number(pid) });
      }
    }
    events.sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0));
    // The grants on the handlers' clock (monotonic): the server's wall clock minus the offset of the
    // wall clock from the monotonic one, measured before and after the run; the tolerance covers
    // the two measures' difference and their resolution.
    const offset = (r.clock.before + r.clock.after) / 2n;
    const toleranceNs =
      25_000_000n +
      (r.clock.after > r.clock.before ? r.clock.after - r.clock.before : r.clock.before - r.clock.after);
    const { rows: grantRows } = await pool.query<{ us: string; stream: string; holder: string }>(
      `SELECT (extract(epoch FROM at) * 1000000)::bigint::text AS us, stream, holder FROM ${SCHEMA}.lease_grants ORDER BY at`,
    );
    const grants = new Map<string, { at: bigint; pid: number }[]>();
    for (const g of grantRows) {
      // Worker ids are host-pid-random (defaultWorkerId).
      const parts = g.holder.split('-');
      const list = grants.get(g.stream) ?? [];
      list.push({ at: BigInt(g.us) * 1000n - offset, pid: Number(parts[parts.length - 2]) });
      grants.set(g.stream, list);
    }
    const open = new Map<string, { pid: number; pos: number; at: bigint }[]>();
    let inFlight = 0;
    let overlaps = 0;
    let ungranted = 0;
    const examples: string[] = [];
    for (const e of events) {
      if (e.ev === 'kill') {
        for (const [k, calls] of open)
          open.set(
            k,
            calls.filter((c) => c.pid !== e.pid),
          );
        continue;
      }
      const calls = open.get(e.stream) ?? [];
      if (e.ev === 'start') {
        if (calls.some((c) => c.pid !== e.pid)) inFlight++;
        const onStream = grants.get(e.stream) ?? [];
        const own = onStream.filter((g) => g.pid === e.pid && g.at <= e.at + toleranceNs).at(-1);
        if (!own) ungranted++;
        else {
          const taken = onStream.find((g) => g.pid !== e.pid && g.at > own.at && g.at < e.at - toleranceNs);
          if (taken) {
            overlaps++;
            if (examples.length < 5)
              examples.push(
                `${e.stream}#${e.pos} (pid ${e.pid}) started ${(e.at - taken.at) / 1_000_000n} ms after pid ${taken.pid} was granted the stream`,
              );
          }
        }
        calls.push({ pid: e.pid, pos: e.pos, at: e.at });
      } else {
        const i = calls.findIndex((c) => c.pid === e.pid && c.pos === e.pos);
        if (i >= 0) calls.splice(i, 1);
      }
      open.set(e.stream, calls);
    }
    figures.inFlightOverlaps = inFlight;
    figures.staleHolderStarts = overlaps;
    figures.leaseGrants = grantRows.length;
    if (overlaps > 0)
      problems.push(
        `rec: ${overlaps} calls started by a holder after another was granted the stream: ${examples.join('; ')}`,
      );
    if (ungranted > 0) problems.push(`rec: ${ungranted} calls started by a process never granted the stream`);
  }
  const { rows: projRows } = await pool.query<{ stream: string; pos: number; n: number }>(
    `SELECT stream, pos, n FROM ${SCHEMA}.proj`,
  );
  const projTwice = projRows.filter((r) => r.n > 1).length;
  const projHad = new Set(projRows.map((r) => `${r.stream}#${r.pos}`));
  let projMissing = 0;
  for (const [s, head] of heads) for (let p = 1; p <= head; p++) if (!projHad.has(`${s}#${p}`)) projMissing++;
  if (projTwice > 0)
    problems.push(`proj: ${projTwice} messages applied more than once by the transactional projection`);
  if (projMissing > 0)
    problems.push(`proj: ${projMissing} messages never applied by the transactional projection`);

  const { rows: leased } = await pool.query<{ n: number; failed: number }>(
    `SELECT count(*) FILTER (WHERE leased_by IS NOT NULL OR lease_id IS NOT NULL)::int AS n,
            count(*) FILTER (WHERE status = 'failed')::int AS failed
       FROM ${SCHEMA}.checkpoints`,
  );
  if (leased[0]!.n > 0) problems.push(`${leased[0]!.n} checkpoints still leased after every worker stopped`);
  if (leased[0]!.failed > 0) problems.push(`${leased[0]!.failed} checkpoints failed`);
  figures.projApplied = projRows.length;
  figures.tailPrinted = [...printed.values()].reduce((a, b) => a + b, 0);
  return { problems, figures };
}
