import type { Queryable, SqlContext } from '../db/queryable.js';
import { statement } from '../db/queryable.js';
import { MESSAGE_COLUMNS, type MessageRow, rowToMessage } from './rowToMessage.js';
import { LOG_START, type LogPosition, type ReadLogOptions, type ReadLogResult } from './types.js';

/*
 * The gap-safe read. Positions are assigned at INSERT but become visible at COMMIT, so a reader
 * ordered by global_position alone can pass a position whose transaction commits later and never
 * see it. Ordering by (transaction_id, global_position) and reading only transactions older than
 * the oldest one still running (the snapshot's xmin) makes everything read final: nothing can
 * later appear before the returned position.
 */
const logSql = (ctx: SqlContext, filter: string) =>
  `SELECT ${MESSAGE_COLUMNS} FROM ${ctx.s}.messages
    WHERE (transaction_id, global_position) > ($1::xid8, $2::bigint)
      AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
      ${filter}
    ORDER BY transaction_id, global_position
    LIMIT $3`;

const CATEGORY_FILTER = `AND split_part(stream_name, '-', 1) = $4`;
const TYPES_FILTER = 'AND type = ANY($4::text[])';
const CATEGORY_TYPES_FILTER = `AND split_part(stream_name, '-', 1) = $4 AND type = ANY($5::text[])`;

function finish(rows: MessageRow[], after: LogPosition): ReadLogResult {
  const messages = rows.map(rowToMessage);
  const last = messages[messages.length - 1];
  return {
    messages,
    position: last ? { transactionId: last.transactionId, globalPosition: last.globalPosition } : after,
  };
}

/** Read the whole log, gap-safe, after a position. */
export async function readLog(
  db: Queryable,
  ctx: SqlContext,
  opts: ReadLogOptions = {},
): Promise<ReadLogResult> {
  const after = opts.after ?? LOG_START;
  const limit = opts.limit ?? 1000;
  const q = opts.types?.length
    ? statement(ctx, 'read_log_types', logSql(ctx, TYPES_FILTER), [
        after.transactionId,
        after.globalPosition,
        limit,
        opts.types,
      ])
    : statement(ctx, 'read_log', logSql(ctx, ''), [after.transactionId, after.globalPosition, limit]);
  const { rows } = await db.query<MessageRow>(q);
  return finish(rows, after);
}

/** Read one category (the stream name's prefix before the first `-`), gap-safe. */
export async function readCategory(
  db: Queryable,
  ctx: SqlContext,
  category: string,
  opts: ReadLogOptions = {},
): Promise<ReadLogResult> {
  const after = opts.after ?? LOG_START;
  const limit = opts.limit ?? 1000;
  const q = opts.types?.length
    ? statement(ctx, 'read_category_types', logSql(ctx, CATEGORY_TYPES_FILTER), [
        after.transactionId,
        after.globalPosition,
        limit,
        category,
        opts.types,
      ])
    : statement(ctx, 'read_category', logSql(ctx, CATEGORY_FILTER), [
        after.transactionId,
        after.globalPosition,
        limit,
        category,
      ]);
  const { rows } = await db.query<MessageRow>(q);
  return finish(rows, after);
}

const headSql = (ctx: SqlContext) =>
  `SELECT coalesce(max(global_position), 0) AS head FROM ${ctx.s}.messages`;

/** The highest global position written so far (committed). */
export async function logHead(db: Queryable, ctx: SqlContext): Promise<number> {
  const { rows } = await db.query<{ head: number }>(headSql(ctx));
  return rows[0]?.head ?? 0;
}

/** The log position at the end of what is readable now (for starting at the end). */
export async function logEnd(db: Queryable, ctx: SqlContext): Promise<LogPosition> {
  const { rows } = await db.query<{ transaction_id: string; global_position: number }>(
    `SELECT transaction_id, global_position FROM ${ctx.s}.messages
      WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot())
      ORDER BY transaction_id DESC, global_position DESC LIMIT 1`,
  );
  const row = rows[0];
  return row ? { transactionId: row.transaction_id, globalPosition: row.global_position } : LOG_START;
}

/**
 * The highest global position up to which every message is final (readable by gap-safe readers):
 * just below the lowest position still held by a running transaction, or the head when none is.
 * Not logEnd()'s position, which is a resume cursor in transaction order: a transaction that took
 * a lower position can commit after one that took a higher one.
 */
export async function readableUpTo(db: Queryable, ctx: SqlContext): Promise<number> {
  // Reads only the log entries at or after xmin, through the log index, whatever the statistics:
  // a plain min() was planned as a walk of the primary key from the start of the log filtering every
  // message (657 buffers at 50k messages), and a lone `>= xmin` as a scan of the table. `+ 0` turns
  // the min/max plan off; the upper bound (no visible message is at or after xmax) makes the
  // condition a range, estimated narrow.
  const { rows } = await db.query<{ readable: number }>(
    `SELECT coalesce(
       (SELECT min(global_position + 0) - 1 FROM ${ctx.s}.messages
         WHERE transaction_id >= pg_snapshot_xmin(pg_current_snapshot())
           AND transaction_id < pg_snapshot_xmax(pg_current_snapshot())),
       (SELECT coalesce(max(global_position), 0) FROM ${ctx.s}.messages)) AS readable`,
  );
  return rows[0]?.readable ?? 0;
}

/** The oldest open transaction in the cluster holding gap-safe readers back, if any. */
export interface BlockingTransaction {
  /** The backend's pid; 0 for a prepared transaction (state 'prepared', its gid in `query`). */
  pid: number;
  ageSeconds: number;
  state: string;
  query: string;
  applicationName: string;
  database: string | null;
  /**
   * beckett's own (a beckett session, by its application name, or a transaction that wrote to or
   * locked rows of the schema's tables: an append or a transactional handler in the application's
   * transaction) or foreign (anything else on the cluster, including a report merely reading them).
   */
  own: boolean;
}

// Ordered by the age of the transaction id, not of the transaction: the snapshot's xmin is the
// oldest running id, and a transaction may take its id long after it began. A prepared transaction
// (two-phase commit) left behind holds it too and has no backend: pid 0, state 'prepared'.
const oldestOpenSql = `
  SELECT pid, age, state, query, application_name, datname, own FROM (
    SELECT a.pid, extract(epoch FROM now() - a.xact_start)::float8 AS age, a.state, a.query,
           a.application_name, a.datname, age(a.backend_xid) AS xid_age,
           (a.application_name LIKE 'beckett%' OR EXISTS (
              SELECT 1 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
               WHERE l.pid = a.pid AND l.locktype = 'relation' AND l.mode <> 'AccessShareLock'
                 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                 AND c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = $2))) AS own
      FROM pg_stat_activity a
     WHERE a.backend_xid IS NOT NULL AND a.pid <> pg_backend_pid() AND a.xact_start IS NOT NULL
       AND now() - a.xact_start >= make_interval(secs => $1)
    UNION ALL
    SELECT 0, extract(epoch FROM now() - p.prepared)::float8, 'prepared',
           'PREPARE TRANSACTION ' || quote_literal(p.gid), '', p.database, age(p.transaction), false
      FROM pg_prepared_xacts p
     WHERE now() - p.prepared >= make_interval(secs => $1)) t
   ORDER BY xid_age DESC LIMIT 1`;

/**
 * The oldest transaction holding a transaction id anywhere in the cluster (older than
 * `minAgeSeconds`): it holds every gap-safe reader back. `schema` tells beckett's own from foreign.
 */
export async function oldestOpenTransaction(
  db: Queryable,
  minAgeSeconds = 0,
  schema = 'beckett',
): Promise<BlockingTransaction | undefined> {
  const { rows } = await db.query<{
    pid: number;
    age: number;
    state: string;
    query: string;
    application_name: string;
    datname: string | null;
    own: boolean;
  }>(oldestOpenSql, [minAgeSeconds, schema]);
  const r = rows[0];
  return r
    ? {
        pid: r.pid,
        ageSeconds: r.age,
        state: r.state,
        query: r.query,
        applicationName: r.application_name,
        database: r.datname,
        own: r.own,
      }
    : undefined;
}

/** One line naming the blocker, for logs and terminals. */
export function describeBlocker(b: BlockingTransaction): string {
  if (b.state === 'prepared')
    return `prepared transaction (foreign, ${b.database ?? 'no database'}) open for ${Math.round(b.ageSeconds)} s: ${b.query} (end it with COMMIT PREPARED or ROLLBACK PREPARED)`;
  return `transaction pid ${b.pid} (${b.own ? "beckett's own" : 'foreign'}, ${b.database ?? 'no database'}, ${b.applicationName || 'no application name'}, ${b.state}) open for ${Math.round(b.ageSeconds)} s: ${b.query.replace(/\s+/g, ' ').slice(0, 120)}`;
}
