import type { Queryable, SqlContext } from '../db/queryable.js';
import { statement } from '../db/queryable.js';

/** A decider's state saved at a position, so loading reads only the tail after it. */
export interface Snapshot {
  key: string;
  /** Schema version of the state: a snapshot of another version is never loaded. */
  stateVersion: number;
  /** Stream version (stream boundary) or global position (query boundary) the state includes. */
  position: number;
  /** Query boundary: the transaction of `position` (the tail is read in log order after it). */
  transactionId: string | null;
  /** Messages folded into the state since the initial state. */
  messageCount: number;
  state: unknown;
  createdAt?: Date;
}

interface SnapshotRow {
  key: string;
  state_version: number;
  position: number;
  transaction_id: string | null;
  message_count: number;
  state: unknown;
  created_at: Date;
}

const loadSql = (ctx: SqlContext) =>
  `SELECT key, state_version, position, transaction_id::text AS transaction_id, message_count, state, created_at
     FROM ${ctx.s}.snapshots WHERE key = $1 AND state_version = $2`;

/** The latest snapshot for a key at this state version, if any. */
export async function loadSnapshot(
  db: Queryable,
  ctx: SqlContext,
  key: string,
  stateVersion: number,
): Promise<Snapshot | undefined> {
  const { rows } = await db.query<SnapshotRow>(
    statement(ctx, 'load_snapshot', loadSql(ctx), [key, stateVersion]),
  );
  const r = rows[0];
  return r
    ? {
        key: r.key,
        stateVersion: r.state_version,
        position: r.position,
        transactionId: r.transaction_id,
        messageCount: r.message_count,
        state: r.state,
        createdAt: r.created_at,
      }
    : undefined;
}

// Keeps the newest: a slower process saving an older state never replaces a newer snapshot.
const saveSql = (ctx: SqlContext) =>
  `INSERT INTO ${ctx.s}.snapshots AS s (key, state_version, position, transaction_id, message_count, state)
   VALUES ($1, $2, $3, $4::xid8, $5, $6::jsonb)
   ON CONFLICT (key, state_version) DO UPDATE
     SET position = excluded.position, transaction_id = excluded.transaction_id,
         message_count = excluded.message_count, state = excluded.state, created_at = now()
   WHERE (coalesce(s.transaction_id, '0'::xid8), s.position)
       < (coalesce(excluded.transaction_id, '0'::xid8), excluded.position)`;

/** Save (or advance) the snapshot for a key and state version. */
export async function saveSnapshot(db: Queryable, ctx: SqlContext, snapshot: Snapshot): Promise<void> {
  await db.query(
    statement(ctx, 'save_snapshot', saveSql(ctx), [
      snapshot.key,
      snapshot.stateVersion,
      snapshot.position,
      snapshot.transactionId,
      snapshot.messageCount,
      JSON.stringify(snapshot.state),
    ]),
  );
}
