import type pg from 'pg';
import type { ResolvedGroup, ResolvedSubscription } from '../config/types.js';
import {
  type PipelinedStatement,
  rowObjects,
  runPipelinedEach,
  runPipelinedWithFields,
} from '../db/pipeline.js';
import type { Queryable, SqlContext } from '../db/queryable.js';
import { statement } from '../db/queryable.js';
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
import { fingerprintOf, streamInFilter } from './subscriptionDefinition.js';

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

interface LogRow {
  xmin: string;
  /** Committed messages wait at or after xmin (behind a transaction still running). */
  held: boolean;
  stream_name: string;
  stream_position: number;
  type: string;
  transaction_id: string;
  global_position: number;
}

interface PositionRow {
  name: string;
  status: string;
  log_transaction_id: string;
  log_position: number;
}

const lockReaderSql = 'SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0)) AS locked';

/** The text whose hash is the group's reader lock (one per schema and group). */
const readerLockKey = (ctx: SqlContext, group: string) => `beckett.reader:${ctx.schema}:${group}`;

/**
 * Take the group's reader lock for the current transaction of `db`, if free. Held until that
 * transaction ends; takes no transaction id.
 */
export async function tryLockReader(db: Queryable, ctx: SqlContext, group: string): Promise<boolean> {
  const { rows } = await db.query<{ locked: boolean }>(
    statement(ctx, 'reader_lock', lockReaderSql, [readerLockKey(ctx, group)]),
  );
  return rows[0]?.locked === true;
}

const positionsSql = (ctx: SqlContext) =>
  `SELECT name, status, log_transaction_id, log_position
     FROM ${ctx.s}.subscriptions
    WHERE group_name = $1 AND name = ANY($2::text[]) AND status <> 'unknown'
      AND fingerprint = ($3::text[])[array_position($2::text[], name)]`;

// The reader lock and the positions in one statement: no positions (a null name) when the lock is
// taken by another process.
const lockAndPositionsSql = (ctx: SqlContext) =>
  `SELECT l.locked, p.name, p.status, p.log_transaction_id, p.log_position
     FROM (SELECT pg_try_advisory_xact_lock(hashtextextended($4, 0)) AS locked) l
     LEFT JOIN LATERAL (${positionsSql(ctx)}) p ON l.locked`;

// Only the columns dispatch needs: the reader never loads message data. The snapshot's xmin comes
// back with the rows (one statement, one snapshot): everything below it has been seen, which lets a
// filtered read move past a long run of messages none of the subscriptions wants. `held` asks the
// log index for its last visible entry (one backward step, whatever the log's size): an EXISTS on
// `transaction_id >= xmin` was planned as a scan of the whole table when nothing was held.
export const logSliceSql = (ctx: SqlContext, typed: boolean) =>
  `SELECT x.xmin, m.stream_name, m.stream_position, m.type, m.transaction_id, m.global_position,
          coalesce((SELECT h.transaction_id FROM ${ctx.s}.messages h
                     ORDER BY h.transaction_id DESC, h.global_position DESC LIMIT 1) >= x.xmin, false) AS held
     FROM (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin) x
     LEFT JOIN LATERAL (
       SELECT stream_name, stream_position, type, transaction_id, global_position
         FROM ${ctx.s}.messages
        WHERE (transaction_id, global_position) > ($1::xid8, $2::bigint)
          AND transaction_id < x.xmin
          ${typed ? 'AND type = ANY($4::text[])' : ''}
        ORDER BY transaction_id, global_position
        LIMIT $3) m ON true`;

/*
 * The round's writes, in one statement: move each subscription's log position to the end of what
 * was read, conditional on the position it had when the round read it (an operator's reset or
 * rewind that committed meanwhile wins: that subscription's part of the round is dropped), and
 * raise stream_version of every matching checkpoint of the subscriptions moved (adv), creating it
 * if new. The upsert's rows come for every subscription served; only the moved ones' are written.
 *
 * A new checkpoint starts after what the subscription has passed: the stream's messages before the
 * subscription's log position as the round read it (u.tx, u.pos; a subscription that starts at the
 * end never handles them). That is just before the stream's first message after that position, which
 * is not always the batch's first one (u.first): a transaction that took its id early can put s#2
 * before s#1 in log order, and a batch boundary between them must not make s#1 look handled.
 * Every earlier position of a committed message is committed, so the lookup sees all of them.
 * It runs for new checkpoints only: on conflict an existing one keeps its position.
 * Subscription rows are locked (adv) before checkpoint rows, in the order a reset takes them.
 */
const dispatchSql = (ctx: SqlContext) =>
  `WITH adv AS (
     UPDATE ${ctx.s}.subscriptions s
        SET log_transaction_id = $5::xid8, log_position = $6, updated_at = now()
       FROM unnest($2::text[], $3::xid8[], $4::bigint[], $7::text[]) AS r(name, tx, pos, fingerprint)
      WHERE s.group_name = $1 AND s.name = r.name
        AND s.log_transaction_id = r.tx AND s.log_position = r.pos
        AND (r.tx, r.pos) < ($5::xid8, $6::bigint)
        AND s.fingerprint = r.fingerprint
     RETURNING s.name),
   up AS (
     INSERT INTO ${ctx.s}.checkpoints (group_name, subscription_name, stream_name, stream_version, stream_position)
     SELECT $1, u.sub, u.stream, u.version,
            CASE WHEN c.stream_name IS NOT NULL THEN 0 ELSE coalesce(
              (SELECT min(m.stream_position) FROM ${ctx.s}.messages m
                WHERE m.stream_name = u.stream AND m.stream_position < u.first
                  AND (m.transaction_id, m.global_position) > (u.tx, u.pos)),
              u.first) - 1 END
       FROM unnest($8::text[], $9::text[], $10::bigint[], $11::bigint[], $12::xid8[], $13::bigint[])
            AS u(sub, stream, version, first, tx, pos)
       LEFT JOIN ${ctx.s}.checkpoints c
         ON c.group_name = $1 AND c.subscription_name = u.sub AND c.stream_name = u.stream
      WHERE u.sub IN (SELECT name FROM adv)
     ON CONFLICT (group_name, subscription_name, stream_name) DO UPDATE
       SET stream_version = EXCLUDED.stream_version, updated_at = now()
       WHERE ${ctx.s}.checkpoints.stream_version < EXCLUDED.stream_version
     RETURNING 1)
   SELECT (SELECT count(*) FROM up)::int AS dispatched, (SELECT count(*) FROM adv)::int AS moved`;

// Only where the position is one this round left (moved to the end, $5 $6, or not moved): a reset
// meanwhile starts initializing again.
const activateSql = (ctx: SqlContext) =>
  `UPDATE ${ctx.s}.subscriptions s SET status = 'active', updated_at = now()
     FROM unnest($2::text[], $3::xid8[], $4::bigint[]) AS r(name, tx, pos)
    WHERE s.group_name = $1 AND s.name = r.name AND s.status = 'initializing'
      AND ((s.log_transaction_id = r.tx AND s.log_position = r.pos)
        OR (s.log_transaction_id = $5::xid8 AND s.log_position = $6::bigint))`;

const markReaderSql = (ctx: SqlContext) =>
  `UPDATE ${ctx.s}.subscription_groups SET reader_worker_id = $2, reader_at = now() WHERE name = $1`;

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

function matches(sub: ResolvedSubscription, row: LogRow): boolean {
  if (sub.types && !sub.types.includes(row.type)) return false;
  return streamInFilter(sub, row.stream_name);
}

function after(row: LogRow, tx: bigint, pos: number): boolean {
  const rtx = BigInt(row.transaction_id);
  return rtx > tx || (rtx === tx && row.global_position > pos);
}

/**
 * What the reader of a process carries from one round to the next: where the last round left the
 * group's slowest subscription, and whether it read typed. When the next round finds the positions
 * where it expects them (nobody else moved them), the log read it sent ahead with the positions,
 * in the same round trip, is the one it would have sent after them.
 */
export interface ReaderHint {
  from?: { tx: string; pos: number; types: string[] | undefined };
}

const sameTypes = (a: string[] | undefined, b: string[] | undefined) =>
  a === b || (a !== undefined && b !== undefined && a.length === b.length && a.every((t, i) => t === b[i]));

const logRowFromText = (r: (string | null)[]): LogRow => ({
  xmin: r[0]!,
  stream_name: r[1] as string,
  stream_position: Number(r[2]),
  type: r[3] as string,
  transaction_id: r[4] as string,
  global_position: Number(r[5]),
  held: r[6] === 't' || r[6] === 'true',
});

/**
 * One reader round for the group, in its own transaction on `client`: one round trip that begins,
 * takes the reader lock and reads the positions (and, with a `hint` that still holds, the log), at
 * most one to read the log, and one that writes and commits. The round commits without waiting for
 * its WAL flush (synchronous_commit off): a crash can only lose the whole round, position and
 * dispatch together, which the next round repeats; a consumer's claim, flushed, flushes it first.
 */
export async function readerRound(
  client: pg.PoolClient,
  ctx: SqlContext,
  group: ResolvedGroup,
  workerId: string,
  batchSize: number,
  hint: ReaderHint = {},
  claim?: ReaderClaims,
): Promise<ReaderRound> {
  // Before the round's BEGIN: at or before the server's now() for its claims.
  const sent = performance.now();
  const subs = [...group.subscriptions.values()];
  const names = subs.map((s) => s.name);
  // Only subscriptions whose stored definition is this process's own (a rolling deploy can run two).
  const fingerprints = subs.map(fingerprintOf);
  const ahead = hint.from;
  const logStatement = (from: { tx: string; pos: number; types: string[] | undefined }) => {
    const params: unknown[] = [from.tx, from.pos, batchSize];
    if (from.types) params.push(from.types);
    return statement(
      ctx,
      from.types ? 'reader_log_typed' : 'reader_log',
      logSliceSql(ctx, !!from.types),
      params,
    ) as PipelinedStatement;
  };
  try {
    const results = await runPipelinedEach(client, [
      { text: 'BEGIN' },
      { text: 'SET LOCAL synchronous_commit = off' },
      statement(ctx, 'reader_positions', lockAndPositionsSql(ctx), [
        group.name,
        names,
        fingerprints,
        readerLockKey(ctx, group.name),
      ]) as PipelinedStatement,
      ...(ahead ? [logStatement(ahead)] : []),
    ]);
    const lockRows = results[2]!;
    if (lockRows[0]?.[0] !== 't') {
      await client.query('ROLLBACK');
      return { locked: true, read: 0, dispatched: 0, full: false };
    }
    const positions: PositionRow[] = lockRows
      .filter((r) => r[1] !== null)
      .map((r) => ({
        name: r[1]!,
        status: r[2]!,
        log_transaction_id: r[3]!,
        log_position: Number(r[4]),
      }));
    if (positions.length === 0) {
      hint.from = undefined;
      await client.query('ROLLBACK');
      return { locked: false, read: 0, dispatched: 0, full: false };
    }
    let min = positions[0]!;
    for (const p of positions) {
      const c = BigInt(p.log_transaction_id) - BigInt(min.log_transaction_id);
      if (c < 0n || (c === 0n && p.log_position < min.log_position)) min = p;
    }
    const active = new Set(positions.map((p) => p.name));
    const served = subs.filter((s) => active.has(s.name));
    // When every subscription names its types, the log is filtered to them in SQL.
    const types = served.every((s) => s.types)
      ? [...new Set(served.flatMap((s) => s.types!))].sort()
      : undefined;
    const from = { tx: min.log_transaction_id, pos: min.log_position, types };
    let raw: LogRow[];
    if (ahead && ahead.tx === from.tx && ahead.pos === from.pos && sameTypes(ahead.types, types))
      raw = results[3]!.map(logRowFromText);
    else raw = (await client.query<LogRow>(logStatement(from) as pg.QueryConfig)).rows;
    const xmin = raw[0]?.xmin;
    const held = raw[0]?.held === true;
    const rows = raw.filter((r) => r.stream_name !== null);

    const full = rows.length >= batchSize;
    const last = rows[rows.length - 1];
    // A short read saw everything below xmin: a typed read can jump there (position (xmin, 0) is
    // before any message of the oldest running transaction). An untyped one just stops at its last row.
    const end =
      !full && types && xmin !== undefined
        ? { tx: xmin, pos: 0 }
        : last
          ? { tx: last.transaction_id, pos: last.global_position }
          : undefined;
    const moves = end !== undefined && (BigInt(end.tx) > BigInt(min.log_transaction_id) || rows.length > 0);

    const subNames: string[] = [];
    const streams: string[] = [];
    const versions: number[] = [];
    const firsts: number[] = [];
    const fromTx: string[] = [];
    const fromPos: number[] = [];
    if (moves) {
      for (const sub of served) {
        const p = positions.find((x) => x.name === sub.name)!;
        const tx = BigInt(p.log_transaction_id);
        const seen = new Map<string, { version: number; first: number }>();
        for (const row of rows) {
          if (!after(row, tx, p.log_position) || !matches(sub, row)) continue;
          const cur = seen.get(row.stream_name);
          if (cur) {
            cur.version = Math.max(cur.version, row.stream_position);
            cur.first = Math.min(cur.first, row.stream_position);
          } else seen.set(row.stream_name, { version: row.stream_position, first: row.stream_position });
        }
        // Sorted so that concurrent upserts lock rows in one order.
        for (const stream of [...seen.keys()].sort()) {
          const v = seen.get(stream)!;
          subNames.push(sub.name);
          streams.push(stream);
          versions.push(v.version);
          firsts.push(v.first);
          fromTx.push(p.log_transaction_id);
          fromPos.push(p.log_position);
        }
      }
    }
    const writes: PipelinedStatement[] = [];
    if (moves) {
      writes.push(
        statement(ctx, 'reader_dispatch', dispatchSql(ctx), [
          group.name,
          positions.map((p) => p.name),
          positions.map((p) => p.log_transaction_id),
          positions.map((p) => p.log_position),
          end.tx,
          end.pos,
          positions.map((p) => fingerprintOf(group.subscriptions.get(p.name)!)),
          subNames,
          streams,
          versions,
          firsts,
          fromTx,
          fromPos,
        ]) as PipelinedStatement,
      );
    }
    if (rows.length > 0)
      writes.push(
        statement(ctx, 'reader_mark', markReaderSql(ctx), [group.name, workerId]) as PipelinedStatement,
      );
    const initializing = positions.filter((p) => p.status === 'initializing');
    if (!full && initializing.length > 0) {
      const to = moves ? end : { tx: min.log_transaction_id, pos: min.log_position };
      writes.push(
        statement(ctx, 'reader_activate', activateSql(ctx), [
          group.name,
          initializing.map((p) => p.name),
          initializing.map((p) => p.log_transaction_id),
          initializing.map((p) => p.log_position),
          to.tx,
          to.pos,
        ]) as PipelinedStatement,
      );
    }
    if (writes.length === 0) {
      await client.query('ROLLBACK');
      hint.from = from;
      return { locked: false, read: rows.length, dispatched: 0, full, held };
    }
    // Claims for the process's idle consumers, when the round raises checkpoints: flushed at commit,
    // as every claim is (a lease must survive a database crash while its holder works).
    const claiming = claim !== undefined && claim.leaseIds.length > 0 && subNames.length > 0;
    if (claiming) {
      writes.push(
        { text: 'SET LOCAL synchronous_commit = on' },
        claimStatement(ctx, claim.args, claim.leaseIds) as PipelinedStatement,
      );
    }
    const { results: written, fields } = await runPipelinedWithFields(client, [
      ...writes,
      { text: 'COMMIT' },
    ]);
    const claims = claiming
      ? claimsFromRows(
          claim.args,
          rowObjects<ClaimRow>(written[writes.length - 1]!, fields[writes.length - 1]!),
          sent,
          claim.leaseIds.length,
        )
      : undefined;
    let dispatched = 0;
    if (moves) {
      const r = written[0]![0]!;
      dispatched = Number(r[0]);
      // Next round reads from the end when every subscription moved there; otherwise it asks.
      hint.from = Number(r[1]) === positions.length ? { tx: end.tx, pos: end.pos, types } : undefined;
    } else hint.from = from;
    return { locked: false, read: rows.length, dispatched, full, held, ...(claims ? { claims } : {}) };
  } catch (err) {
    hint.from = undefined;
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
