import type { Queryable, SqlContext } from '../db/queryable.js';
import { TransactionIdsAheadError } from '../errors.js';

/*
 * The gap-safe log compares stored transaction ids (xid8) with the server's running transactions.
 * A database restored into another cluster (pg_dump/pg_restore, a logical copy) keeps the ids of
 * the cluster it came from, while the new server counts from wherever it is: when that is lower,
 * every message written after the restore sorts before every stored cursor, and readers see nothing
 * new until the counter passes the stored ids (possibly billions of transactions later).
 *
 * The check compares the highest stored id (messages through the log index; subscription cursors,
 * which can outlive their messages under retention) with the next id the server will assign
 * (pg_snapshot_xmax of the current snapshot: reading it assigns no transaction id, unlike
 * pg_current_xact_id()). message_tags is not read: its ids are its messages'.
 */
const aheadSql = (ctx: SqlContext) =>
  `SELECT greatest(
            (SELECT transaction_id FROM ${ctx.s}.messages ORDER BY transaction_id DESC LIMIT 1),
            (SELECT max(log_transaction_id) FROM ${ctx.s}.subscriptions))::text AS stored_max,
          pg_snapshot_xmax(pg_current_snapshot())::text AS counter`;

export interface TransactionIdCounter {
  /** The highest transaction id stored in the schema (null when nothing is stored). */
  storedMax: string | null;
  /** The next transaction id this server assigns. */
  counter: string;
  /** True when stored ids are at or past the counter: the database was restored elsewhere. */
  ahead: boolean;
}

/** The stored transaction ids against the server's counter. */
export async function transactionIdCounter(db: Queryable, ctx: SqlContext): Promise<TransactionIdCounter> {
  const { rows } = await db.query<{ stored_max: string | null; counter: string }>(aheadSql(ctx));
  const r = rows[0]!;
  return {
    storedMax: r.stored_max,
    counter: r.counter,
    ahead: r.stored_max !== null && BigInt(r.stored_max) >= BigInt(r.counter),
  };
}

/**
 * Refuse to read the log of a restored database whose stored transaction ids are ahead of the
 * server (see `es db rebase-xids`). Every reader of the log calls this once at start.
 */
export async function assertTransactionIdsBehindCounter(db: Queryable, ctx: SqlContext): Promise<void> {
  const c = await transactionIdCounter(db, ctx);
  if (c.ahead) throw new TransactionIdsAheadError(ctx.schema, c.storedMax!, c.counter);
}
