import type pg from 'pg';
import { inTransaction, type Queryable, type SqlContext } from '../db/queryable.js';
import { BeckettError, ExitCode, InvalidInputError, NotFoundError } from '../errors.js';
import { logEnd } from '../store/readLog.js';
import { LOG_START } from '../store/types.js';
import { assertOneOf, assertOptions, assertText } from '../validation/options.js';

export interface KnownSubscription {
  group: string;
  name: string;
  status: string;
}

const knownSql = (ctx: SqlContext) =>
  `SELECT group_name AS "group", name, status FROM ${ctx.s}.subscriptions ORDER BY group_name, name`;

/** Every subscription registered in the schema. */
export async function knownSubscriptions(db: Queryable, ctx: SqlContext): Promise<KnownSubscription[]> {
  const { rows } = await db.query<KnownSubscription>(knownSql(ctx));
  return rows;
}

/**
 * Check that a group (and a subscription of it) is registered; otherwise NotFoundError naming the
 * ones that are.
 */
export async function assertSubscription(
  db: Queryable,
  ctx: SqlContext,
  group: string,
  subscription?: string,
): Promise<KnownSubscription | undefined> {
  const known = await knownSubscriptions(db, ctx);
  const groups = [...new Set(known.map((k) => k.group))];
  if (!groups.includes(group)) {
    throw new NotFoundError(
      `Unknown group "${group}" in schema "${ctx.schema}". ${
        groups.length > 0 ? `Known groups: ${groups.join(', ')}.` : 'No group is registered yet.'
      }`,
      'Groups are registered when a worker of theirs starts (es worker --group NAME); see es subscriptions.',
    );
  }
  if (subscription === undefined) return undefined;
  const found = known.find((k) => k.group === group && k.name === subscription);
  if (!found) {
    const names = known.filter((k) => k.group === group).map((k) => k.name);
    throw new NotFoundError(
      `Unknown subscription "${subscription}" in group "${group}". Known subscriptions of ${group}: ${names.join(', ')}.`,
      'See es subscriptions for every group and subscription.',
    );
  }
  return found;
}

/** Check that some group has a subscription of this name; otherwise NotFoundError naming them all. */
export async function assertSubscriptionName(
  db: Queryable,
  ctx: SqlContext,
  subscription: string,
): Promise<void> {
  const known = await knownSubscriptions(db, ctx);
  if (known.some((k) => k.name === subscription)) return;
  throw new NotFoundError(
    `Unknown subscription "${subscription}" in schema "${ctx.schema}". ${
      known.length > 0
        ? `Known subscriptions: ${known.map((k) => `${k.group}/${k.name}`).join(', ')}.`
        : 'No subscription is registered yet.'
    }`,
    'See es subscriptions for every group and subscription.',
  );
}

export interface ResetResult {
  group: string;
  subscription: string;
  /** Checkpoints deleted. */
  checkpoints: number;
  /** The log position the subscription starts again from. */
  from: 'beginning' | 'end';
  position: number;
}

const lockSubscriptionSql = (ctx: SqlContext) =>
  `SELECT status FROM ${ctx.s}.subscriptions WHERE group_name = $1 AND name = $2 FOR UPDATE`;
const busyCheckpointsSql = (ctx: SqlContext) =>
  `SELECT count(*)::int AS n FROM ${ctx.s}.checkpoints
    WHERE group_name = $1 AND subscription_name = $2 AND leased_until >= now()`;
const deleteCheckpointsSql = (ctx: SqlContext) =>
  `DELETE FROM ${ctx.s}.checkpoints WHERE group_name = $1 AND subscription_name = $2`;
const restartSql = (ctx: SqlContext) =>
  `UPDATE ${ctx.s}.subscriptions
      SET log_transaction_id = $3::xid8, log_position = $4, updated_at = now(),
          status = CASE WHEN status = 'paused' THEN 'paused' ELSE 'initializing' END
    WHERE group_name = $1 AND name = $2`;

/**
 * Start a subscription over: delete its checkpoints and move its log position to the beginning (or
 * the current end) of the log. Refused while a worker holds one of its checkpoints: pause it first
 * and let the work in flight finish.
 */
export async function resetSubscription(
  pool: pg.Pool,
  ctx: SqlContext,
  args: { group: string; subscription: string; to: 'beginning' | 'end' },
): Promise<ResetResult> {
  assertOptions(args, 'resetSubscription', ['group', 'subscription', 'to']);
  if (args === undefined) throw new InvalidInputError('resetSubscription needs { group, subscription, to }.');
  assertText(args.group, 'group');
  assertText(args.subscription, 'subscription');
  if (args.to === undefined) throw new InvalidInputError('to must be "beginning" or "end", got nothing.');
  assertOneOf(args.to, 'to', ['beginning', 'end']);
  await assertSubscription(pool, ctx, args.group, args.subscription);
  return inTransaction(pool, async (client) => {
    const key = [args.group, args.subscription];
    await client.query(lockSubscriptionSql(ctx), key);
    const { rows } = await client.query<{ n: number }>(busyCheckpointsSql(ctx), key);
    const busy = rows[0]?.n ?? 0;
    if (busy > 0) {
      throw new BeckettError(
        'SUBSCRIPTION_BUSY',
        `${args.group}/${args.subscription} has ${busy} checkpoint(s) held by workers right now.`,
        {
          exitCode: ExitCode.conflict,
          hint: `Pause it first (es subscriptions pause ${args.group} ${args.subscription}), wait for the work in flight, then reset.`,
        },
      );
    }
    const deleted = await client.query(deleteCheckpointsSql(ctx), key);
    const pos = args.to === 'end' ? await logEnd(client, ctx) : LOG_START;
    await client.query(restartSql(ctx), [...key, pos.transactionId, pos.globalPosition]);
    return {
      group: args.group,
      subscription: args.subscription,
      checkpoints: deleted.rowCount ?? 0,
      from: args.to,
      position: pos.globalPosition,
    };
  });
}

const liveWorkersSql = (ctx: SqlContext) =>
  `SELECT count(*)::int AS n FROM ${ctx.s}.workers
    WHERE group_name = $1 AND heartbeat_at > now() - make_interval(secs => $2)`;

/** Workers of a group whose heartbeat is recent (default: within 30 s). */
export async function liveWorkerCount(
  db: Queryable,
  ctx: SqlContext,
  group: string,
  staleSeconds = 30,
): Promise<number> {
  const { rows } = await db.query<{ n: number }>(liveWorkersSql(ctx), [group, staleSeconds]);
  return rows[0]?.n ?? 0;
}
