import { createHash } from 'node:crypto';
import type { Queryable, SqlContext } from '../db/queryable.js';
import { statement } from '../db/queryable.js';
import type { Metadata } from '../store/types.js';

/** The LISTEN/NOTIFY channel that wakes delivery loops when a message is scheduled or cancelled. */
export function scheduleChannelFor(schema: string): string {
  const channel = `beckett_${schema}_schedule`;
  // Channel names are identifiers (at most 63 bytes): long schema names get a hashed channel.
  return channel.length <= 63
    ? channel
    : `beckett_schedule_${createHash('sha256').update(schema).digest('hex').slice(0, 32)}`;
}

export interface ScheduledRow {
  id: string;
  stream_name: string;
  type: string;
  data: unknown;
  metadata: Metadata;
  tags: string[];
  deliver_at: Date;
  attempts: number;
  last_error: string | null;
  created_at: Date;
}

const COLUMNS = 'id, stream_name, type, data, metadata, tags, deliver_at, attempts, last_error, created_at';

export interface InsertScheduledArgs {
  id: string;
  stream: string;
  type: string;
  data: unknown;
  metadata: Metadata;
  tags: string[];
  /** Absolute time, or a delay counted on the database clock (so app clock skew does not matter). */
  at: Date | undefined;
  delayMs: number | undefined;
}

/**
 * Insert a scheduled message and notify delivery loops (the NOTIFY goes out at commit, so a
 * caller's transaction that rolls back wakes nobody). A pending id is not scheduled twice.
 */
export async function insertScheduled(
  db: Queryable,
  ctx: SqlContext,
  a: InsertScheduledArgs,
): Promise<{ inserted: boolean; deliverAt: Date | undefined }> {
  const sql = `WITH ins AS (
  INSERT INTO ${ctx.s}.scheduled_messages (id, stream_name, type, data, metadata, tags, deliver_at)
  VALUES ($1, $2, $3, $4, $5, $6, coalesce($7::timestamptz, clock_timestamp() + $8::float8 * interval '1 millisecond'))
  ON CONFLICT (id) DO NOTHING
  RETURNING deliver_at
)
SELECT deliver_at, pg_notify($9, '') FROM ins`;
  const { rows } = await db.query<{ deliver_at: Date }>(
    statement(ctx, 'schedule_insert', sql, [
      a.id,
      a.stream,
      a.type,
      JSON.stringify(a.data),
      JSON.stringify(a.metadata),
      a.tags,
      a.at ?? null,
      a.delayMs ?? 0,
      scheduleChannelFor(ctx.schema),
    ]),
  );
  return { inserted: rows.length > 0, deliverAt: rows[0]?.deliver_at };
}

/**
 * Delete a pending scheduled message. A delivery holding the row (FOR UPDATE) makes this wait for
 * its commit, after which the row is gone: so a delivered message is never reported cancelled, and
 * a cancelled one is never delivered (delivery skips the row this DELETE holds).
 */
export async function deleteScheduled(db: Queryable, ctx: SqlContext, id: string): Promise<boolean> {
  const sql = `WITH del AS (DELETE FROM ${ctx.s}.scheduled_messages WHERE id = $1 RETURNING id)
SELECT id, pg_notify($2, '') FROM del`;
  const { rows } = await db.query(
    statement(ctx, 'schedule_delete', sql, [id, scheduleChannelFor(ctx.schema)]),
  );
  return rows.length > 0;
}

/** Claim up to `limit` due messages, oldest first; rows other deliverers hold are skipped. */
export async function claimDueScheduled(
  db: Queryable,
  ctx: SqlContext,
  limit: number,
): Promise<ScheduledRow[]> {
  const sql = `SELECT ${COLUMNS} FROM ${ctx.s}.scheduled_messages
WHERE deliver_at <= clock_timestamp()
ORDER BY deliver_at, id
LIMIT $1
FOR UPDATE SKIP LOCKED`;
  const { rows } = await db.query<ScheduledRow>(statement(ctx, 'schedule_claim', sql, [limit]));
  return rows;
}

export async function deleteDelivered(db: Queryable, ctx: SqlContext, ids: string[]): Promise<void> {
  if (ids.length === 0) return;
  await db.query(
    statement(
      ctx,
      'schedule_delivered',
      `DELETE FROM ${ctx.s}.scheduled_messages WHERE id = ANY($1::uuid[])`,
      [ids],
    ),
  );
}

/** Record a failed delivery and push the message back by `retryInMs`. */
export async function recordDeliveryFailure(
  db: Queryable,
  ctx: SqlContext,
  id: string,
  error: string,
  retryInMs: number,
): Promise<void> {
  const sql = `UPDATE ${ctx.s}.scheduled_messages
SET attempts = attempts + 1, last_error = $2, deliver_at = clock_timestamp() + $3::float8 * interval '1 millisecond'
WHERE id = $1`;
  await db.query(statement(ctx, 'schedule_failed', sql, [id, error, retryInMs]));
}

/** Pending messages in delivery order. */
export async function selectScheduled(
  db: Queryable,
  ctx: SqlContext,
  args: { limit: number; stream?: string | undefined },
): Promise<ScheduledRow[]> {
  const sql = `SELECT ${COLUMNS} FROM ${ctx.s}.scheduled_messages
WHERE ($2::text IS NULL OR stream_name = $2)
ORDER BY deliver_at, id
LIMIT $1`;
  const { rows } = await db.query<ScheduledRow>(sql, [args.limit, args.stream ?? null]);
  return rows;
}

/**
 * Milliseconds until the next scheduled message or recurring occurrence is due, on the database
 * clock (negative when already due; null when nothing is pending).
 */
export async function msUntilNextDue(
  db: Queryable,
  ctx: SqlContext,
  recurringNames: string[],
): Promise<number | null> {
  const sql = `SELECT least(
  (SELECT extract(epoch FROM min(deliver_at) - clock_timestamp()) * 1000 FROM ${ctx.s}.scheduled_messages),
  (SELECT extract(epoch FROM min(greatest(next_occurrence_at, retry_at)) - clock_timestamp()) * 1000
     FROM ${ctx.s}.recurring_messages
    WHERE name = ANY($1::text[]) AND next_occurrence_at < 'infinity'::timestamptz)
)::float8 AS ms`;
  const { rows } = await db.query<{ ms: number | null }>(
    statement(ctx, 'schedule_next_due', sql, [recurringNames]),
  );
  return rows[0]?.ms ?? null;
}
