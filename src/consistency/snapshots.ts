import type { Queryable, SqlContext } from '../db/queryable.js';
import { statement } from '../db/queryable.js';

/** A decider's state saved at a position, so loading reads only the tail after it. */
export interface Snapshot {
  key: string;
  /** Schema version of the state: a snapshot of another version is never loaded. */
  stateVersion: number;
  /** Stream boundary: the stream version the state includes. Query boundary: the last global position folded. */
  position: number;
  /** Query boundary: the snapshot of the read the state was built from (the tail is what it did not see). */
  readSnapshot: string | null;
  /** Messages folded into the state since the initial state. */
  messageCount: number;
  state: unknown;
  createdAt?: Date;
}

interface SnapshotRow {
  key: string;
  state_version: number;
  position: number;
  read_snapshot: string | null;
  message_count: number;
  state: unknown;
  created_at: Date;
}

const loadSql = (ctx: SqlContext) =>
  `SELECT key, state_version, position, read_snapshot::text AS read_snapshot, message_count, state, created_at
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
        readSnapshot: r.read_snapshot,
        messageCount: r.message_count,
        state: r.state,
        createdAt: r.created_at,
      }
    : undefined;
}

// Keeps the newest: a slower process saving an older state never replaces a newer snapshot.
const saveSql = (ctx: SqlContext) =>
  `INSERT INTO ${ctx.s}.snapshots AS s (key, state_version, position, read_snapshot, message_count, state)
   VALUES ($1, $2, $3, $4::pg_snapshot, $5, $6::jsonb)
   ON CONFLICT (key, state_version) DO UPDATE
     SET position = excluded.position, read_snapshot = excluded.read_snapshot,
         message_count = excluded.message_count, state = excluded.state, created_at = now()
   WHERE s.message_count < excluded.message_count`;

/** Save (or advance) the snapshot for a key and state version. */
export async function saveSnapshot(db: Queryable, ctx: SqlContext, snapshot: Snapshot): Promise<void> {
  await db.query(
    statement(ctx, 'save_snapshot', saveSql(ctx), [
      snapshot.key,
      snapshot.stateVersion,
      snapshot.position,
      snapshot.readSnapshot,
      snapshot.messageCount,
      JSON.stringify(snapshot.state),
    ]),
  );
}
