import type pg from 'pg';
import type { Queryable, SqlContext } from '../db/queryable.js';
import { BeckettError, ExitCode } from '../errors.js';
import { describeBlocker, oldestOpenTransaction } from '../store/readLog.js';
import { transactionIdCounter } from '../store/transactionIdCounter.js';

/*
 * The repair for a database restored into another cluster (see store/transactionIdCounter.ts):
 * rewrite every stored transaction id below the server's counter, keeping the log order.
 *
 * Which ids are from the old cluster. Every message restored sorts before every message written
 * since the restore, whatever their ids (a new message's id is small, from this server's counter,
 * and can fall anywhere among the old ones). Positions tell them apart: the restore sets the
 * position sequence past every restored message, so messages written since have higher positions.
 * Ids at or above the counter are certainly old, and the rows restored with them were written by
 * the same restoring transaction (the same xmin); the highest position among those rows is where
 * the restored log ends. A (transaction id, position) pair is old when its id is at or above the
 * counter or its position is at most that end. (A copy that wrote old messages in many
 * transactions, such as logical replication, can leave early low-id messages counted as new: they
 * then sort after the old ones, so a cursor that had passed them sees them again; nothing is
 * skipped.)
 *
 * The new ids. Every distinct (old?, id) key of messages, message tags and subscription cursors is
 * ranked, old before new and by id within each, and the ranks are laid just below the oldest
 * transaction still running (pg_snapshot_xmin): exactly the old order, every new message after
 * every old one, and every transaction that writes after the repair sorts after all of them. The
 * id 0 (a cursor at the start) stays. A plain offset would need the old ids' whole span to fit
 * under the counter (billions of ids for a busy source cluster); ranks need one id per distinct
 * transaction, and when even those do not fit, the counter is advanced first by burning
 * transaction ids (sub-transactions of a throwaway write, about 100k a second).
 *
 * Writers are held off by EXCLUSIVE locks (in the order appenders take them: messages, then
 * tags), which also wait for writes in flight to commit, so none is left with an old id.
 * Decider snapshots with a query boundary hold a pg_snapshot from the old cluster: they are a cache,
 * so they are dropped (the next decision reads the query again) rather than translated.
 */

/** Every column of the schema holding transaction ids, and how the repair treats it. */
const XID_COLUMNS: Record<string, string> = {
  'messages.transaction_id': 'rebased with global_position',
  'message_tags.transaction_id': 'rebased with global_position',
  'subscriptions.log_transaction_id': 'rebased with log_position',
  'snapshots.read_snapshot': 'query-boundary snapshots dropped',
};

const xidColumnsSql = `
  SELECT c.relname || '.' || a.attname AS col
    FROM pg_attribute a
    JOIN pg_class c ON c.oid = a.attrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
     AND a.atttypid IN ('xid8'::regtype, 'xid'::regtype, 'pg_snapshot'::regtype, 'txid_snapshot'::regtype)
   ORDER BY 1`;

/** The schema's columns of transaction-id types (xid8, xid, pg_snapshot). */
export async function transactionIdColumns(db: Queryable, schema: string): Promise<string[]> {
  const { rows } = await db.query<{ col: string }>(xidColumnsSql, [schema]);
  return rows.map((r) => r.col);
}

// $1 the counter (next id): a pair is old when its id is at or above it, or its position is at most
// $2, the end of the restored log.
const isOld = (xid: string, pos: string) => `(${xid} >= $1::xid8 OR coalesce(${pos} <= $2::bigint, false))`;

const restoredEndSql = (ctx: SqlContext) =>
  `SELECT max(global_position) AS restored_end FROM ${ctx.s}.messages
    WHERE xmin::text IN (SELECT DISTINCT xmin::text FROM ${ctx.s}.messages WHERE transaction_id >= $1::xid8)`;

// The (old?, id) keys in rank order; ids below 3 are not transaction ids (0 marks the log's start).
const keysSql = (ctx: SqlContext) =>
  `SELECT DISTINCT ${isOld('transaction_id', 'global_position')} AS old, transaction_id AS x
     FROM ${ctx.s}.messages WHERE transaction_id >= '3'
   UNION
   SELECT DISTINCT ${isOld('transaction_id', 'global_position')}, transaction_id
     FROM ${ctx.s}.message_tags WHERE transaction_id >= '3'
   UNION
   SELECT ${isOld('log_transaction_id', 'log_position')}, log_transaction_id
     FROM ${ctx.s}.subscriptions WHERE log_transaction_id >= '3'`;

const countsSql = (ctx: SqlContext) =>
  `SELECT count(*)::bigint AS keys, count(*) FILTER (WHERE NOT old)::bigint AS new_keys FROM (${keysSql(ctx)}) k`;

const newMessagesSql = (ctx: SqlContext) =>
  `SELECT count(*)::bigint AS n FROM ${ctx.s}.messages
    WHERE transaction_id >= '3' AND NOT ${isOld('transaction_id', 'global_position')}`;

// $3 the bound (pg_snapshot_xmin): the ranks end just below it.
const mapSql = (ctx: SqlContext) =>
  `CREATE TEMP TABLE beckett_xid_map ON COMMIT DROP AS
   SELECT old, x,
          ((($3::xid8)::text::bigint - count(*) OVER () - 1
            + row_number() OVER (ORDER BY old DESC, x))::text)::xid8 AS nx
     FROM (${keysSql(ctx)}) k`;

const updateSql = (ctx: SqlContext, table: string, xid: string, pos: string) =>
  `UPDATE ${ctx.s}.${table} AS t SET ${xid} = k.nx
     FROM beckett_xid_map k
    WHERE k.x = t.${xid} AND k.old = ${isOld(`t.${xid}`, `t.${pos}`)}`;

export interface RebasePlan {
  schema: string;
  /** The highest stored transaction id, and the server's next one. */
  storedMax: string | null;
  counter: string;
  /** Stored ids are ahead of the counter: readers are blind until the repair runs. */
  ahead: boolean;
  /** The last global position restored from the old cluster (null when none is recognised). */
  restoredEnd: number | null;
  /** Messages written in this cluster since the restore (they will sort after the restored ones). */
  messagesSinceRestore: number;
  /** Distinct transaction ids to rewrite (one new id each). */
  distinctIds: number;
  /** Transaction ids the counter must advance first so that every rewritten id fits below it. */
  toBurn: number;
}

export interface RebaseResult extends RebasePlan {
  applied: boolean;
  /** Transaction ids burnt to advance the counter. */
  burned: number;
  messages: number;
  tags: number;
  cursors: number;
  snapshotsDropped: number;
}

/** Columns of the schema the repair does not know: rewriting the others would break them. */
async function assertKnownColumns(db: Queryable, schema: string): Promise<void> {
  const unknown = (await transactionIdColumns(db, schema)).filter((c) => !(c in XID_COLUMNS));
  if (unknown.length > 0)
    throw new BeckettError(
      'TRANSACTION_ID_COLUMNS_UNKNOWN',
      `The schema "${schema}" has transaction-id columns this version of beckett cannot rebase: ${unknown.join(', ')}.`,
      { exitCode: ExitCode.databaseAhead, hint: 'Upgrade beckett to the version that migrated the schema.' },
    );
}

async function plan(db: Queryable, ctx: SqlContext): Promise<RebasePlan & { bound: string }> {
  const { rows } = await db.query<{ counter: string; bound: string }>(
    `SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS counter,
            pg_snapshot_xmin(pg_current_snapshot())::text AS bound`,
  );
  const { counter, bound } = rows[0]!;
  const c = await transactionIdCounter(db, ctx);
  const end = await db.query<{ restored_end: number | null }>(restoredEndSql(ctx), [counter]);
  const restoredEnd = end.rows[0]?.restored_end ?? null;
  const counts = await db.query<{ keys: number }>(countsSql(ctx), [counter, restoredEnd]);
  const fresh = await db.query<{ n: number }>(newMessagesSql(ctx), [counter, restoredEnd]);
  const distinctIds = counts.rows[0]?.keys ?? 0;
  // Ranks take [bound - distinctIds, bound - 1]; the lowest must stay a normal id (>= 3).
  const short = distinctIds + 3 - Number(bound);
  return {
    schema: ctx.schema,
    storedMax: c.storedMax,
    counter,
    bound,
    ahead: c.ahead,
    restoredEnd,
    messagesSinceRestore: fresh.rows[0]?.n ?? 0,
    distinctIds,
    toBurn: short > 0 ? short + Math.ceil(distinctIds / 10) + 1000 : 0,
  };
}

const BURN_CHUNK = 50_000;

/**
 * Advance the server's transaction-id counter by about `n`: each sub-transaction of a throwaway
 * write to a temporary table takes an id of its own. Committed in chunks, so the snapshot's xmin
 * moves past them.
 */
export async function advanceTransactionCounter(pool: pg.Pool, n: number): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query('CREATE TEMP TABLE IF NOT EXISTS beckett_xid_burn (i int) ON COMMIT DELETE ROWS');
    for (let left = Math.ceil(n); left > 0; left -= BURN_CHUNK) {
      const k = Math.min(left, BURN_CHUNK);
      await client.query(
        `DO $$ BEGIN FOR i IN 1..${k} LOOP
           BEGIN INSERT INTO pg_temp.beckett_xid_burn VALUES (i); EXCEPTION WHEN OTHERS THEN NULL; END;
         END LOOP; END $$`,
      );
    }
    await client.query('DROP TABLE pg_temp.beckett_xid_burn');
  } finally {
    client.release();
  }
}

function strip(p: RebasePlan & { bound?: string }): RebasePlan {
  const { bound: _bound, ...rest } = p;
  return rest;
}

/** What the repair would do, changing nothing. */
export async function planTransactionIdRebase(db: Queryable, ctx: SqlContext): Promise<RebasePlan> {
  await assertKnownColumns(db, ctx.schema);
  return strip(await plan(db, ctx));
}

/**
 * Rewrite the schema's stored transaction ids below the server's counter, keeping the log order,
 * so that readers of a restored database see new messages again. Does nothing when the ids are not
 * ahead. Stop the workers first: writers wait on the repair's locks while it runs.
 */
export async function rebaseTransactionIds(
  pool: pg.Pool,
  ctx: SqlContext,
  opts: { onBurn?: (n: number) => void } = {},
): Promise<RebaseResult> {
  await assertKnownColumns(pool, ctx.schema);
  let burned = 0;
  let lastBound: string | undefined;
  for (let attempt = 0; attempt < 5; attempt++) {
    const estimate = await plan(pool, ctx);
    const none = { applied: false, burned, messages: 0, tags: 0, cursors: 0, snapshotsDropped: 0 };
    if (!estimate.ahead) return { ...strip(estimate), ...none };
    // Burning moves the counter, not a running transaction: if the bound did not move, one holds it.
    if (estimate.toBurn > 0 && estimate.bound === lastBound) break;
    lastBound = estimate.bound;
    if (estimate.toBurn > 0) {
      opts.onBurn?.(estimate.toBurn);
      await advanceTransactionCounter(pool, estimate.toBurn);
      burned += estimate.toBurn;
    }
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      // Writers first wait for these; a write in flight finishes before the locks are granted.
      for (const table of ['messages', 'message_tags', 'subscriptions', 'snapshots'])
        await client.query(`LOCK TABLE ${ctx.s}.${table} IN EXCLUSIVE MODE`);
      const p = await plan(client, ctx);
      if (!p.ahead || p.toBurn > 0) {
        // Written meanwhile, or a long transaction holds the bound down: measure again.
        await client.query('ROLLBACK');
        if (!p.ahead) return { ...strip(p), ...none };
        continue;
      }
      const params = [p.counter, p.restoredEnd];
      await client.query(mapSql(ctx), [p.counter, p.restoredEnd, p.bound]);
      await client.query('CREATE INDEX ON beckett_xid_map (x)');
      await client.query('ANALYZE beckett_xid_map');
      const messages = await client.query(
        updateSql(ctx, 'messages', 'transaction_id', 'global_position'),
        params,
      );
      const tags = await client.query(
        updateSql(ctx, 'message_tags', 'transaction_id', 'global_position'),
        params,
      );
      const cursors = await client.query(
        updateSql(ctx, 'subscriptions', 'log_transaction_id', 'log_position'),
        params,
      );
      const snapshots = await client.query(`DELETE FROM ${ctx.s}.snapshots WHERE read_snapshot IS NOT NULL`);
      const after = await transactionIdCounter(client, ctx);
      if (after.storedMax !== null && BigInt(after.storedMax) >= BigInt(p.bound))
        throw new Error(`rebase left transaction id ${after.storedMax} at or above ${p.bound}`);
      await client.query('COMMIT');
      return {
        ...strip(p),
        applied: true,
        burned,
        messages: messages.rowCount ?? 0,
        tags: tags.rowCount ?? 0,
        cursors: cursors.rowCount ?? 0,
        snapshotsDropped: snapshots.rowCount ?? 0,
      };
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  }
  const blocker = await oldestOpenTransaction(pool, 0, ctx.schema);
  throw new BeckettError(
    'TRANSACTION_ID_REBASE_STARVED',
    `The transaction ids could not be rebased: the oldest running transaction keeps the room below the counter too small${blocker ? ` (${describeBlocker(blocker)})` : ''}.`,
    {
      exitCode: ExitCode.unexpected,
      hint: 'End long-running transactions on the server (see es lag) and run the command again.',
    },
  );
}
