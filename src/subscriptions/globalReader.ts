import type pg from 'pg';
import type { ResolvedGroup } from '../config/types.js';
import { type PipelinedStatement, rowObjects, runPipelinedWithFields } from '../db/pipeline.js';
import { GENERIC_INDEX_PLANS, NO_FLUSH, setForTransaction } from '../db/planSettings.js';
import type { Queryable, SqlContext } from '../db/queryable.js';
import { statement, transactionStatements } from '../db/queryable.js';
import { TransactionIdsAheadError } from '../errors.js';
import { describeBlocker, oldestOpenTransaction } from '../store/readLog.js';
import { transactionIdCounter } from '../store/transactionIdCounter.js';
import {
  type Claim,
  type ClaimArgs,
  type ClaimRow,
  claimStatement,
  claimsFromRows,
} from './claimCheckpoint.js';
import { fingerprintOf } from './subscriptionDefinition.js';

/*
 * The global reader of a group. Each round is one transaction that:
 *   1. takes the group's reader lock (a transaction-scoped advisory lock, tried, never waited on):
 *      one reader per group at a time across every process and host; a busy lock means another
 *      process reads, and a dead reader's lock goes with its connection (no lease to wait out).
 *      An advisory lock assigns no transaction id, where a row lock would: a round with nothing
 *      to write then holds none, and so never holds back gap-safe readers anywhere in the cluster;
 *   2. reads the gap-safe log (transaction_id, global_position) below the snapshot's xmin, from the
 *      lowest position among the group's subscriptions, so a new subscription starting from the
 *      beginning catches up while its siblings, already further, ignore what they have seen;
 *   3. moves each subscription's log position to the end of what was read, only where it is still
 *      the position the round read (an operator's reset or rewind that committed meanwhile wins:
 *      that subscription's part of the round is dropped);
 *   4. raises stream_version of every matching (subscription, stream) checkpoint of the
 *      subscriptions it moved, creating it if new,
 * and commits, so dispatch and position move together: a crash repeats a round, never skips one.
 * Subscription rows are locked before checkpoint rows, in the order a reset takes them.
 *
 * The upsert only touches stream_version: a checkpoint leased by a consumer keeps its lease, so a
 * new message for a stream being processed never makes it claimable by a second consumer.
 */

/** Takes the reader lock whose key (readerLockKey) is the parameter `key`, if free: true if taken. */
const tryLockSql = (key: string) => `pg_try_advisory_xact_lock(hashtextextended(${key}, 0))`;

/** The text whose hash is the group's reader lock (one per schema and group). */
const readerLockKey = (ctx: SqlContext, group: string) => `beckett.reader:${ctx.schema}:${group}`;

/**
 * Take the group's reader lock for the current transaction of `db`, if free. Held until that
 * transaction ends; takes no transaction id.
 */
export async function tryLockReader(db: Queryable, ctx: SqlContext, group: string): Promise<boolean> {
  const { rows } = await db.query<{ locked: boolean }>(
    statement(ctx, 'reader_lock', `SELECT ${tryLockSql('$1')} AS locked`, [readerLockKey(ctx, group)]),
  );
  return rows[0]?.locked === true;
}

/**
 * The round, one statement (one snapshot), in the order of the comment at the top:
 *   lk   the reader lock (tried);
 *   pos  the positions of the subscriptions this process serves (its own definitions only: a
 *        rolling deploy can run two), none when the lock is another process's;
 *   rd   where the read starts (the slowest subscription), the snapshot's xmin, and the types
 *        to read when every subscription names its types (else null: every type);
 *   log  the gap-safe slice: after rd, below xmin, in log order, at most a batch. Only the columns
 *        dispatch needs: the reader never loads message data;
 *   e    what was read and where the round ends: a short typed read saw everything below xmin and
 *        jumps there (position (xmin, 0) is before any message of the oldest running transaction);
 *        otherwise the last row read;
 *   hits per subscription and stream, what it matches after its own position (filters as
 *        streamInFilter: category is the part before the first dash);
 *   sub  moves each position to the end, only where it is still the one read (an operator's reset
 *        or rewind that committed meanwhile wins: the row is rechecked once its lock is granted, and
 *        that subscription's part of the round is dropped), and activates an initializing one
 *        after a short read;
 *   up   raises stream_version of the moved subscriptions' checkpoints (each looked up by its key, a
 *        subplan per row: as a join, planned for the one row the planner guesses, it scanned every
 *        checkpoint of the group for each stream of a batch), creating the new ones just
 *        before the stream's first message after the position read (not always the batch's first:
 *        a transaction that took its id early can put s#2 before s#1 in log order, and a batch
 *        boundary between them must not make s#1 look handled; every earlier position of a
 *        committed message is committed, so the lookup sees all of them). On conflict an existing
 *        checkpoint keeps its position and lease;
 *   mk   marks the group's reader (when another one was marked, or a second after the last mark: one
 *        row updated per message at a message per round was WAL and dead rows for a timestamp).
 * Rows lock in the order a reset takes them: subscriptions (sub, whose result up waits for), then
 * checkpoints. The count of checkpoints raised goes to the transaction's setting
 * beckett.reader_dispatched, which gates the claim that may follow (see claimCheckpoint.ts).
 */
const roundSql = (ctx: SqlContext) =>
  `WITH lk AS MATERIALIZED (
     SELECT ${tryLockSql('$4')} AS locked),
   pos AS MATERIALIZED (
     SELECT s.name, s.status, s.log_transaction_id AS tx, s.log_position AS pos,
            d.fingerprint, d.category, d.stream, d.typed
       FROM lk
       JOIN unnest($2::text[], $3::text[], $7::text[], $8::text[], $9::boolean[])
            AS d(name, fingerprint, category, stream, typed) ON lk.locked
       JOIN ${ctx.s}.subscriptions s
         ON s.group_name = $1 AND s.name = d.name AND s.fingerprint = d.fingerprint
      WHERE s.status <> 'unknown'),
   st AS MATERIALIZED (
     SELECT t.sub, t.type FROM unnest($10::text[], $11::text[]) AS t(sub, type)
      WHERE t.sub IN (SELECT name FROM pos)),
   rd AS MATERIALIZED (
     SELECT f.tx, f.pos, pg_snapshot_xmin(pg_current_snapshot()) AS xmin,
            CASE WHEN (SELECT bool_and(p.typed) FROM pos p)
                 THEN coalesce((SELECT array_agg(DISTINCT st.type) FROM st), '{}') END AS types
       FROM (SELECT p.tx, p.pos FROM pos p ORDER BY p.tx, p.pos LIMIT 1) f),
   log AS MATERIALIZED (
     SELECT m.stream_name, m.stream_position, m.type, m.transaction_id, m.global_position
       FROM rd CROSS JOIN LATERAL (
         SELECT stream_name, stream_position, type, transaction_id, global_position
           FROM ${ctx.s}.messages
          WHERE (transaction_id, global_position) > (rd.tx, rd.pos)
            AND transaction_id < rd.xmin
            AND (rd.types IS NULL OR type = ANY(rd.types))
          ORDER BY transaction_id, global_position
          LIMIT $5::int) m),
   e AS MATERIALIZED (
     SELECT rd.tx AS from_tx, c.n, c.n >= $5::int AS filled,
            CASE WHEN c.n < $5::int AND rd.types IS NOT NULL THEN rd.xmin ELSE l.transaction_id END AS tx,
            CASE WHEN c.n < $5::int AND rd.types IS NOT NULL THEN 0::bigint ELSE l.global_position END AS pos
       FROM rd
      CROSS JOIN (SELECT count(*)::int AS n FROM log) c
       LEFT JOIN LATERAL (SELECT transaction_id, global_position FROM log
                           ORDER BY transaction_id DESC, global_position DESC LIMIT 1) l ON true),
   hits AS (
     SELECT p.name AS sub, l.stream_name AS stream, max(l.stream_position) AS version,
            min(l.stream_position) AS first, p.tx, p.pos
       FROM pos p
       JOIN log l
         ON (l.transaction_id, l.global_position) > (p.tx, p.pos)
        AND (NOT p.typed OR EXISTS (SELECT 1 FROM st WHERE st.sub = p.name AND st.type = l.type))
        AND (p.stream IS NULL OR l.stream_name = p.stream)
        AND (p.category IS NULL OR split_part(l.stream_name, '-', 1) = p.category)
      GROUP BY p.name, l.stream_name, p.tx, p.pos),
   sub AS (
     UPDATE ${ctx.s}.subscriptions s
        SET log_transaction_id = CASE WHEN m.mv THEN e.tx ELSE s.log_transaction_id END,
            log_position = CASE WHEN m.mv THEN e.pos ELSE s.log_position END,
            status = CASE WHEN s.status = 'initializing' AND NOT e.filled THEN 'active' ELSE s.status END,
            updated_at = now()
       FROM pos p
      CROSS JOIN e
      CROSS JOIN LATERAL (
        SELECT e.tx IS NOT NULL AND (e.tx > e.from_tx OR e.n > 0) AND (p.tx, p.pos) < (e.tx, e.pos) AS mv) m
      WHERE s.group_name = $1 AND s.name = p.name
        AND s.log_transaction_id = p.tx AND s.log_position = p.pos AND s.fingerprint = p.fingerprint
        AND (m.mv OR (s.status = 'initializing' AND NOT e.filled))
     RETURNING s.name, m.mv AS moved),
   up AS (
     INSERT INTO ${ctx.s}.checkpoints (group_name, subscription_name, stream_name, stream_version, stream_position)
     SELECT $1, u.sub, u.stream, u.version,
            CASE WHEN EXISTS (SELECT 1 FROM ${ctx.s}.checkpoints c
                               WHERE c.group_name = $1 AND c.subscription_name = u.sub
                                 AND c.stream_name = u.stream) THEN 0
            ELSE coalesce(
              (SELECT min(m.stream_position) FROM ${ctx.s}.messages m
                WHERE m.stream_name = u.stream AND m.stream_position < u.first
                  AND (m.transaction_id, m.global_position) > (u.tx, u.pos)),
              u.first) - 1 END
       FROM hits u
      WHERE u.sub IN (SELECT name FROM sub WHERE moved)
      ORDER BY u.sub, u.stream
     ON CONFLICT (group_name, subscription_name, stream_name) DO UPDATE
       SET stream_version = EXCLUDED.stream_version, updated_at = now()
       WHERE ${ctx.s}.checkpoints.stream_version < EXCLUDED.stream_version
     RETURNING 1),
   mk AS (
     UPDATE ${ctx.s}.subscription_groups SET reader_worker_id = $6, reader_at = now()
      WHERE name = $1 AND (SELECT n FROM e) > 0
        AND (reader_worker_id IS DISTINCT FROM $6 OR reader_at IS NULL OR reader_at < now() - interval '1 second')
     RETURNING 1)
   SELECT l.locked,
          (SELECT count(*) FROM pos)::int AS served,
          coalesce((SELECT n FROM e), 0) AS read,
          coalesce((SELECT filled FROM e), false) AS filled,
          coalesce((SELECT h.transaction_id FROM ${ctx.s}.messages h
                     ORDER BY h.transaction_id DESC, h.global_position DESC LIMIT 1)
                   >= pg_snapshot_xmin(pg_current_snapshot()), false) AS held,
          d.dispatched,
          (SELECT count(*) FROM sub WHERE moved)::int AS moved,
          (SELECT count(*) FROM mk)::int AS marked,
          set_config('beckett.reader_dispatched', d.dispatched::text, true) AS gate,
          pg_current_xact_id_if_assigned()::text AS xid
     FROM lk l CROSS JOIN (SELECT count(*)::int AS dispatched FROM up) d`;

/**
 * The round's transaction settings: no WAL flush at commit (a claim asks for one), and generic
 * plans without sequential or bitmap scans (src/db/planSettings.ts). Where the log read starts comes
 * from the subscriptions' rows in the same statement, so the planner cannot know how much of the
 * log lies after it: it guessed a few rows and read the whole rest of the log through a bitmap, then
 * sorted it for the batch's LIMIT (50 ms per round for 5,000 messages behind, growing with the log);
 * a generic plan made on a nearly empty log read it by a sequential scan and a sort, every round,
 * until autovacuum analyzed it; and once the checkpoints table was large, the server planned the
 * round afresh at every execution (1.7 ms per round in bench/worker.throughput, more than the round
 * took to run). The log index in order stops at the batch.
 */
export const ROUND_SETTINGS = setForTransaction(NO_FLUSH, GENERIC_INDEX_PLANS);

interface RoundRow {
  locked: boolean;
  served: number;
  read: number;
  filled: boolean;
  held: boolean;
  dispatched: number;
  xid: string | null;
}

/** The round's statement for `group` (see roundSql): the parameters say what each subscription wants. */
export function roundStatement(
  ctx: SqlContext,
  group: ResolvedGroup,
  workerId: string,
  batchSize: number,
): pg.QueryConfig {
  const subs = [...group.subscriptions.values()];
  const typed = subs.filter((s) => s.types);
  return statement(ctx, 'reader_round', roundSql(ctx), [
    group.name,
    subs.map((s) => s.name),
    subs.map(fingerprintOf),
    readerLockKey(ctx, group.name),
    batchSize,
    workerId,
    subs.map((s) => s.category ?? null),
    subs.map((s) => s.stream ?? null),
    subs.map((s) => s.types !== undefined),
    typed.flatMap((s) => s.types!.map(() => s.name)),
    typed.flatMap((s) => s.types!),
  ]);
}

export interface ReaderRound {
  /** Another process holds the group's reader lock. */
  locked: boolean;
  /** Log messages read. */
  read: number;
  /** Checkpoints created or raised. */
  dispatched: number;
  /** The read filled the batch: more is waiting. */
  full: boolean;
  /**
   * Committed messages wait behind a transaction still running (at or after the snapshot's xmin):
   * when it ends nobody is notified, so the reader looks again soon rather than at its idle pace.
   */
  held?: boolean;
  /** Checkpoints the round claimed for the caller's idle consumers (see ReaderClaims). */
  claims?: Claim[];
  /**
   * The transaction id the round's statement took by writing (null: it wrote nothing, and so held
   * back no gap-safe reader anywhere). For tests and diagnostics.
   */
  xid: string | null;
}

/**
 * Idle consumers of the reader's own process: a round that dispatches claims up to
 * `leaseIds.length` checkpoints in its own transaction (the n-th under `leaseIds[n]`), so that the
 * consumers it wakes need no claim round trip of their own. That transaction then commits flushed,
 * as a claim does. When the round fails after sending, the leases may be held: the caller hands
 * them back (releaseLease) once the database answers.
 */
export interface ReaderClaims {
  args: ClaimArgs;
  leaseIds: string[];
}

/**
 * One reader round for the group, in its own transaction on `client`, in one round trip: BEGIN,
 * the round's statement (roundSql), the claims for the process's idle consumers (made only when
 * the round raised checkpoints), COMMIT. The round commits without waiting for its WAL flush
 * (synchronous_commit off): a crash can only lose the whole round, position and dispatch together,
 * which the next round repeats. A claim made in it flushes the commit (as every claim does: a lease
 * must survive a database crash while its holder works).
 */
export async function readerRound(
  client: pg.PoolClient,
  ctx: SqlContext,
  group: ResolvedGroup,
  workerId: string,
  batchSize: number,
  claim?: ReaderClaims,
): Promise<ReaderRound> {
  // Before the round's BEGIN: at or before the server's now() for its claims.
  const sent = performance.now();
  const claiming = claim !== undefined && claim.leaseIds.length > 0;
  const transaction = transactionStatements(ctx.prepared);
  const statements: PipelinedStatement[] = [
    transaction.begin,
    statement(ctx, 'round_settings', ROUND_SETTINGS, []) as PipelinedStatement,
    roundStatement(ctx, group, workerId, batchSize) as PipelinedStatement,
  ];
  if (claiming) statements.push(claimStatement(ctx, claim.args, claim.leaseIds) as PipelinedStatement);
  statements.push(transaction.commit);
  try {
    // Only the round's and the claim's columns are read.
    const { results, fields } = await runPipelinedWithFields(client, statements, (i) => i === 2 || i === 3);
    const r = rowObjects<RoundRow>(results[2]!, fields[2]!)[0]!;
    if (!r.locked) return { locked: true, read: 0, dispatched: 0, full: false, xid: r.xid };
    const claims = claiming
      ? claimsFromRows(claim.args, rowObjects<ClaimRow>(results[3]!, fields[3]!), sent, claim.leaseIds.length)
      : [];
    return {
      locked: false,
      read: r.read,
      dispatched: r.dispatched,
      full: r.filled,
      held: r.held,
      xid: r.xid,
      ...(claims.length > 0 ? { claims } : {}),
    };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

const waitingSql = (ctx: SqlContext) =>
  `SELECT count(*)::int AS n FROM ${ctx.s}.messages
    WHERE transaction_id >= pg_snapshot_xmin(pg_current_snapshot())
      AND transaction_id < pg_snapshot_xmax(pg_current_snapshot())`;

/**
 * Why a reader sees nothing while messages exist: a transaction open for 30 s or more holds the
 * snapshot's xmin back, or the database now runs on another cluster (a restore or a failover to a
 * logical copy under a running worker) whose counter is behind the stored transaction ids. Returns a
 * description when messages are waiting behind such a transaction, or the ids are ahead.
 */
export async function heldBack(
  db: Queryable,
  ctx: SqlContext,
  minAgeSeconds = 30,
): Promise<string | undefined> {
  const counter = await transactionIdCounter(db, ctx);
  if (counter.ahead) {
    const e = new TransactionIdsAheadError(ctx.schema, counter.storedMax!, counter.counter);
    return `${e.message} ${e.hint}`;
  }
  const blocker = await oldestOpenTransaction(db, minAgeSeconds, ctx.schema);
  if (!blocker) return undefined;
  const { rows } = await db.query<{ n: number }>(waitingSql(ctx));
  const waiting = rows[0]?.n ?? 0;
  if (waiting === 0) return undefined;
  return `${waiting} committed messages wait behind ${describeBlocker(blocker)}`;
}

/** Convenience for tests and tools: one round on a pooled connection. */
export async function runReaderRound(
  db: pg.Pool,
  ctx: SqlContext,
  group: ResolvedGroup,
  workerId: string,
  batchSize = 1000,
): Promise<ReaderRound> {
  const client = await db.connect();
  let failed: unknown;
  try {
    return await readerRound(client, ctx, group, workerId, batchSize);
  } catch (err) {
    failed = err;
    throw err;
  } finally {
    client.release(failed instanceof Error ? failed : undefined);
  }
}

export type { Queryable };
