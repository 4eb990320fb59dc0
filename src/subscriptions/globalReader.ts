import type pg from 'pg';
import type { ResolvedGroup, ResolvedSubscription } from '../config/types.js';
import type { Queryable, SqlContext } from '../db/queryable.js';
import { statement } from '../db/queryable.js';
import { oldestOpenTransaction } from '../store/readLog.js';

/*
 * The global reader of a group. Each round is one transaction that:
 *   1. locks the group's row FOR UPDATE SKIP LOCKED: one reader per group at a time across every
 *      process and host; a busy lock means another process reads, and a dead reader's lock goes
 *      with its connection (no lease to wait out);
 *   2. reads the gap-safe log (transaction_id, global_position) below the snapshot's xmin, from the
 *      lowest position among the group's subscriptions, so a new subscription starting from the
 *      beginning catches up while its siblings, already further, ignore what they have seen;
 *   3. raises stream_version of every matching (subscription, stream) checkpoint, creating it if new;
 *   4. moves each subscription's log position to the end of what was read,
 * and commits, so dispatch and position move together: a crash repeats a round, never skips one.
 *
 * The upsert only touches stream_version: a checkpoint leased by a consumer keeps its lease, so a
 * new message for a stream being processed never makes it claimable by a second consumer.
 */

interface LogRow {
  xmin: string;
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

const lockGroupSql = (ctx: SqlContext) =>
  `SELECT name FROM ${ctx.s}.subscription_groups WHERE name = $1 FOR UPDATE SKIP LOCKED`;

const positionsSql = (ctx: SqlContext) =>
  `SELECT name, status, log_transaction_id::text AS log_transaction_id, log_position
     FROM ${ctx.s}.subscriptions
    WHERE group_name = $1 AND name = ANY($2::text[]) AND status <> 'unknown'`;

// Only the columns dispatch needs: the reader never loads message data. The snapshot's xmin comes
// back with the rows (one statement, one snapshot): everything below it has been seen, which lets a
// filtered read move past a long run of messages none of the subscriptions wants.
const logSliceSql = (ctx: SqlContext, typed: boolean) =>
  `SELECT x.xmin::text AS xmin, m.stream_name, m.stream_position, m.type,
          m.transaction_id::text AS transaction_id, m.global_position
     FROM (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin) x
     LEFT JOIN LATERAL (
       SELECT stream_name, stream_position, type, transaction_id, global_position
         FROM ${ctx.s}.messages
        WHERE (transaction_id, global_position) > ($1::xid8, $2::bigint)
          AND transaction_id < x.xmin
          ${typed ? 'AND type = ANY($4::text[])' : ''}
        ORDER BY transaction_id, global_position
        LIMIT $3) m ON true`;

// A new checkpoint starts just before the first message dispatched to it, so a subscription that
// starts at the end of the log never handles a stream's older messages.
const upsertCheckpointsSql = (ctx: SqlContext) =>
  `INSERT INTO ${ctx.s}.checkpoints (group_name, subscription_name, stream_name, stream_version, stream_position)
   SELECT $1, u.sub, u.stream, u.version, u.first - 1
     FROM unnest($2::text[], $3::text[], $4::bigint[], $5::bigint[]) AS u(sub, stream, version, first)
   ON CONFLICT (group_name, subscription_name, stream_name) DO UPDATE
     SET stream_version = EXCLUDED.stream_version, updated_at = now()
     WHERE ${ctx.s}.checkpoints.stream_version < EXCLUDED.stream_version`;

const advanceSql = (ctx: SqlContext) =>
  `UPDATE ${ctx.s}.subscriptions
      SET log_transaction_id = $3::xid8, log_position = $4, updated_at = now()
    WHERE group_name = $1 AND name = ANY($2::text[])
      AND (log_transaction_id, log_position) < ($3::xid8, $4::bigint)`;

const activateSql = (ctx: SqlContext) =>
  `UPDATE ${ctx.s}.subscriptions SET status = 'active', updated_at = now()
    WHERE group_name = $1 AND name = ANY($2::text[]) AND status = 'initializing'`;

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
}

function matches(sub: ResolvedSubscription, row: LogRow): boolean {
  if (sub.types && !sub.types.includes(row.type)) return false;
  if (sub.stream !== undefined && row.stream_name !== sub.stream) return false;
  if (sub.category !== undefined) {
    const dash = row.stream_name.indexOf('-');
    const category = dash < 0 ? row.stream_name : row.stream_name.slice(0, dash);
    if (category !== sub.category) return false;
  }
  return true;
}

function after(row: LogRow, tx: bigint, pos: number): boolean {
  const rtx = BigInt(row.transaction_id);
  return rtx > tx || (rtx === tx && row.global_position > pos);
}

/** One reader round for the group, in its own transaction on `client`. */
export async function readerRound(
  client: pg.PoolClient,
  ctx: SqlContext,
  group: ResolvedGroup,
  workerId: string,
  batchSize: number,
): Promise<ReaderRound> {
  const subs = [...group.subscriptions.values()];
  const names = subs.map((s) => s.name);
  await client.query('BEGIN');
  try {
    const locked = await client.query(statement(ctx, 'reader_lock', lockGroupSql(ctx), [group.name]));
    if (locked.rowCount === 0) {
      await client.query('ROLLBACK');
      return { locked: true, read: 0, dispatched: 0, full: false };
    }
    const { rows: positions } = await client.query<PositionRow>(
      statement(ctx, 'reader_positions', positionsSql(ctx), [group.name, names]),
    );
    if (positions.length === 0) {
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
    const types = served.every((s) => s.types) ? [...new Set(served.flatMap((s) => s.types!))] : undefined;
    const params: unknown[] = [min.log_transaction_id, min.log_position, batchSize];
    if (types) params.push(types);
    const { rows: raw } = await client.query<LogRow>(
      statement(ctx, types ? 'reader_log_typed' : 'reader_log', logSliceSql(ctx, !!types), params),
    );
    const xmin = raw[0]?.xmin;
    const rows = raw.filter((r) => r.stream_name !== null);

    const subNames: string[] = [];
    const streams: string[] = [];
    const versions: number[] = [];
    const firsts: number[] = [];
    if (rows.length > 0) {
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
        }
      }
      if (subNames.length > 0) {
        await client.query(
          statement(ctx, 'reader_upsert', upsertCheckpointsSql(ctx), [
            group.name,
            subNames,
            streams,
            versions,
            firsts,
          ]),
        );
      }
    }
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
    if (end && (BigInt(end.tx) > BigInt(min.log_transaction_id) || rows.length > 0)) {
      await client.query(
        statement(ctx, 'reader_advance', advanceSql(ctx), [group.name, [...active], end.tx, end.pos]),
      );
    }
    if (rows.length > 0)
      await client.query(statement(ctx, 'reader_mark', markReaderSql(ctx), [group.name, workerId]));
    if (!full && positions.some((p) => p.status === 'initializing')) {
      await client.query(statement(ctx, 'reader_activate', activateSql(ctx), [group.name, [...active]]));
    }
    await client.query('COMMIT');
    return { locked: false, read: rows.length, dispatched: subNames.length, full };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

const waitingSql = (ctx: SqlContext) =>
  `SELECT count(*)::int AS n FROM ${ctx.s}.messages
    WHERE transaction_id >= pg_snapshot_xmin(pg_current_snapshot())`;

/**
 * Why a reader sees nothing while messages exist: a transaction open for 30 s or more holds the
 * snapshot's xmin back. Returns a description when messages are waiting behind such a transaction.
 */
export async function heldBack(
  db: Queryable,
  ctx: SqlContext,
  minAgeSeconds = 30,
): Promise<string | undefined> {
  const blocker = await oldestOpenTransaction(db, minAgeSeconds);
  if (!blocker) return undefined;
  const { rows } = await db.query<{ n: number }>(waitingSql(ctx));
  const waiting = rows[0]?.n ?? 0;
  if (waiting === 0) return undefined;
  return `${waiting} committed messages wait behind transaction pid ${blocker.pid} (${blocker.database ?? 'no database'}, ${blocker.applicationName || 'no application name'}, ${blocker.state}) open for ${Math.round(blocker.ageSeconds)} s: ${blocker.query.slice(0, 120)}`;
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
