import type { ResolvedGroup } from '../config/types.js';
import { assertSafeSchemaName, escapeIdentifier } from '../db/identifier.js';
import type { Queryable, SqlContext } from '../db/queryable.js';
import { NotFoundError } from '../errors.js';
import { logEnd } from '../store/readLog.js';

export type SubscriptionStatus = 'initializing' | 'active' | 'paused' | 'replaying' | 'unknown';

/** Statuses whose checkpoints consumers may claim. */
export const CLAIMABLE_STATUSES: SubscriptionStatus[] = ['initializing', 'active', 'replaying'];

const insertGroupSql = (ctx: SqlContext) =>
  `INSERT INTO ${ctx.s}.subscription_groups (name) VALUES ($1) ON CONFLICT (name) DO NOTHING`;

// A subscription coming back into the config after being marked unknown resumes where it was.
const insertSubscriptionSql = (ctx: SqlContext) =>
  `INSERT INTO ${ctx.s}.subscriptions (group_name, name, log_transaction_id, log_position, start_from)
   VALUES ($1, $2, $3::xid8, $4, $5)
   ON CONFLICT (group_name, name) DO UPDATE
     SET status = 'active', updated_at = now()
     WHERE ${ctx.s}.subscriptions.status = 'unknown'`;

const markUnknownSql = (ctx: SqlContext) =>
  `UPDATE ${ctx.s}.subscriptions SET status = 'unknown', updated_at = now()
    WHERE group_name = $1 AND NOT (name = ANY($2::text[])) AND status <> 'unknown'`;

/**
 * Record the group's subscriptions (idempotent, safe from many processes at once). A new
 * subscription starts at the beginning of the log or at its current end; subscriptions of the group
 * that are in the database but no longer in the config are marked `unknown`, never deleted, so
 * their checkpoints survive a deploy that briefly lacks them.
 */
export async function registerSubscriptions(
  db: Queryable,
  ctx: SqlContext,
  group: ResolvedGroup,
): Promise<void> {
  await db.query(insertGroupSql(ctx), [group.name]);
  const names = [...group.subscriptions.keys()];
  let end: { transactionId: string; globalPosition: number } | undefined;
  for (const sub of group.subscriptions.values()) {
    let pos = { transactionId: '0', globalPosition: 0 };
    if (sub.startFrom === 'end') {
      end ??= await logEnd(db, ctx);
      pos = end;
    }
    await db.query(insertSubscriptionSql(ctx), [
      group.name,
      sub.name,
      pos.transactionId,
      pos.globalPosition,
      sub.startFrom,
    ]);
  }
  await db.query(markUnknownSql(ctx), [group.name, names]);
}

export interface SubscriptionRow {
  group: string;
  name: string;
  status: SubscriptionStatus;
  logTransactionId: string;
  logPosition: number;
}

/** The subscriptions of a group as stored. */
export async function listSubscriptions(
  db: Queryable,
  schema: string,
  group: string,
): Promise<SubscriptionRow[]> {
  const s = escapeIdentifier(assertSafeSchemaName(schema));
  const { rows } = await db.query<{
    group_name: string;
    name: string;
    status: SubscriptionStatus;
    log_transaction_id: string;
    log_position: number;
  }>(
    `SELECT group_name, name, status, log_transaction_id::text AS log_transaction_id, log_position
       FROM ${s}.subscriptions WHERE group_name = $1 ORDER BY name`,
    [group],
  );
  return rows.map((r) => ({
    group: r.group_name,
    name: r.name,
    status: r.status,
    logTransactionId: r.log_transaction_id,
    logPosition: r.log_position,
  }));
}

async function setStatus(
  db: Queryable,
  schema: string,
  group: string,
  name: string,
  to: SubscriptionStatus,
  from: SubscriptionStatus[],
): Promise<boolean> {
  const s = escapeIdentifier(assertSafeSchemaName(schema));
  const { rows } = await db.query<{ status: SubscriptionStatus; changed: boolean }>(
    `WITH target AS (SELECT status FROM ${s}.subscriptions WHERE group_name = $1 AND name = $2),
          changed AS (
            UPDATE ${s}.subscriptions SET status = $3, updated_at = now()
             WHERE group_name = $1 AND name = $2 AND status = ANY($4::text[])
             RETURNING 1)
     SELECT (SELECT status FROM target) AS status, EXISTS (SELECT 1 FROM changed) AS changed`,
    [group, name, to, from],
  );
  const row = rows[0];
  if (!row || row.status === null) {
    throw new NotFoundError(
      `Subscription "${name}" of group "${group}" is not registered in schema "${schema}".`,
      'Subscriptions are registered when a worker of their group starts (es worker --group NAME).',
    );
  }
  return row.changed;
}

/**
 * Pause a subscription: its checkpoints are no longer claimed (work in flight finishes); the global
 * reader keeps recording new messages, so resuming loses nothing. Resolves false when it was
 * already paused (or unknown/replaying: only active or initializing subscriptions are paused).
 */
export function pauseSubscription(
  db: Queryable,
  schema: string,
  group: string,
  name: string,
): Promise<boolean> {
  return setStatus(db, schema, group, name, 'paused', ['active', 'initializing']);
}

/** Resume a paused subscription. Resolves false when it was not paused. */
export function resumeSubscription(
  db: Queryable,
  schema: string,
  group: string,
  name: string,
): Promise<boolean> {
  return setStatus(db, schema, group, name, 'active', ['paused']);
}
