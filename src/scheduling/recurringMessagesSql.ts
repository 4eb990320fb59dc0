import type { Queryable, SqlContext } from '../db/queryable.js';
import { statement } from '../db/queryable.js';

export interface RecurringRow {
  name: string;
  cron: string;
  timezone: string;
  stream_name: string;
  type: string;
  data: unknown;
  next_occurrence_at: Date;
  last_occurrence_at: Date | null;
  last_error: string | null;
  /** Failed attempts at the pending occurrence. */
  attempts: number;
}

const COLUMNS =
  'name, cron, timezone, stream_name, type, data, next_occurrence_at, last_occurrence_at, last_error, attempts';

/**
 * Create or update the row of a recurring message. A changed cron expression or time zone
 * restarts its schedule at `next`; otherwise the stored next occurrence stands (so workers starting
 * at different times agree). An unchanged row is not written.
 */
export async function upsertRecurring(
  db: Queryable,
  ctx: SqlContext,
  a: {
    name: string;
    cron: string;
    timezone: string;
    stream: string;
    type: string;
    data: unknown;
    next: Date;
  },
): Promise<void> {
  const sql = `INSERT INTO ${ctx.s}.recurring_messages AS r (name, cron, timezone, stream_name, type, data, next_occurrence_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (name) DO UPDATE SET
  next_occurrence_at = CASE WHEN (r.cron, r.timezone) IS DISTINCT FROM (EXCLUDED.cron, EXCLUDED.timezone)
                            THEN EXCLUDED.next_occurrence_at ELSE r.next_occurrence_at END,
  cron = EXCLUDED.cron, timezone = EXCLUDED.timezone, stream_name = EXCLUDED.stream_name,
  type = EXCLUDED.type, data = EXCLUDED.data, updated_at = now()
WHERE (r.cron, r.timezone, r.stream_name, r.type, r.data)
  IS DISTINCT FROM (EXCLUDED.cron, EXCLUDED.timezone, EXCLUDED.stream_name, EXCLUDED.type, EXCLUDED.data)`;
  await db.query(sql, [a.name, a.cron, a.timezone, a.stream, a.type, JSON.stringify(a.data), a.next]);
}

/** Claim due recurring messages among `names` (rows other workers hold are skipped), with the database time. */
export async function claimDueRecurring(
  db: Queryable,
  ctx: SqlContext,
  names: string[],
  limit: number,
): Promise<{ rows: RecurringRow[]; now: Date }> {
  const sql = `SELECT ${COLUMNS}, clock_timestamp() AS db_now FROM ${ctx.s}.recurring_messages
WHERE name = ANY($1::text[]) AND next_occurrence_at <= clock_timestamp()
  AND (retry_at IS NULL OR retry_at <= clock_timestamp())
ORDER BY next_occurrence_at, name
LIMIT $2
FOR UPDATE SKIP LOCKED`;
  const { rows } = await db.query<RecurringRow & { db_now: Date }>(
    statement(ctx, 'recurring_claim', sql, [names, limit]),
  );
  return { rows, now: rows[0]?.db_now ?? new Date() };
}

/**
 * Move a claimed row, whose occurrence was appended, to its next occurrence (null: the expression
 * never fires again).
 */
export async function advanceRecurring(
  db: Queryable,
  ctx: SqlContext,
  a: { name: string; occurrence: Date; next: Date | null },
): Promise<void> {
  const sql = `UPDATE ${ctx.s}.recurring_messages
SET next_occurrence_at = coalesce($3, 'infinity'::timestamptz), last_occurrence_at = $2, last_error = NULL,
    attempts = 0, retry_at = NULL, updated_at = now()
WHERE name = $1`;
  await db.query(statement(ctx, 'recurring_advance', sql, [a.name, a.occurrence, a.next]));
}

/** Keep a claimed row at its occurrence, which could not be appended: try again in `retryInMs`. */
export async function retryRecurringLater(
  db: Queryable,
  ctx: SqlContext,
  a: { name: string; error: string; retryInMs: number },
): Promise<void> {
  const sql = `UPDATE ${ctx.s}.recurring_messages
SET last_error = $2, attempts = attempts + 1, retry_at = clock_timestamp() + make_interval(secs => $3::float8 / 1000),
    updated_at = now()
WHERE name = $1`;
  await db.query(statement(ctx, 'recurring_retry', sql, [a.name, a.error, a.retryInMs]));
}

export async function selectRecurring(db: Queryable, ctx: SqlContext): Promise<RecurringRow[]> {
  const { rows } = await db.query<RecurringRow>(
    `SELECT ${COLUMNS} FROM ${ctx.s}.recurring_messages ORDER BY next_occurrence_at, name`,
  );
  return rows;
}
