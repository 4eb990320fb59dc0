import type pg from 'pg';
import type { ResolvedConfig } from '../config/types.js';
import { inTransaction, type SqlContext } from '../db/queryable.js';
import { BeckettError, ExitCode, InvalidInputError } from '../errors.js';
import { lockGroupRegistrations } from '../subscriptions/registerSubscriptions.js';
import { assertOptions, assertText } from '../validation/options.js';
import { assertSubscription } from './subscriptionControl.js';

export interface ForgetResult {
  group: string;
  subscription: string;
  /** Checkpoints deleted with it. */
  checkpoints: number;
}

const lockedStateSql = (ctx: SqlContext) =>
  `SELECT s.status,
          (SELECT count(*)::int FROM ${ctx.s}.subscription_runners r
            WHERE r.group_name = s.group_name AND r.subscription_name = s.name AND r.alive_until > now()) AS runners,
          (SELECT count(*)::int FROM ${ctx.s}.checkpoints c
            WHERE c.group_name = s.group_name AND c.subscription_name = s.name AND c.leased_until >= now()) AS leased
     FROM ${ctx.s}.subscriptions s WHERE s.group_name = $1 AND s.name = $2 FOR UPDATE`;
const deleteCheckpointsSql = (ctx: SqlContext) =>
  `DELETE FROM ${ctx.s}.checkpoints WHERE group_name = $1 AND subscription_name = $2`;
// Its definitions and runner rows go with it (ON DELETE CASCADE).
const deleteSubscriptionSql = (ctx: SqlContext) =>
  `DELETE FROM ${ctx.s}.subscriptions WHERE group_name = $1 AND name = $2`;

const refused = (what: string, hint: string) =>
  new BeckettError('SUBSCRIPTION_NOT_FORGETTABLE', what, { exitCode: ExitCode.conflict, hint });

/**
 * Forget a subscription that no config declares any more: delete it with its checkpoints (kept
 * forever otherwise: a subscription no live process runs is only marked `unknown`). Refused for a
 * subscription the given config declares, one not `unknown`, one a live process still runs (of
 * another config version), and one with a checkpoint leased right now. The checks run under the
 * lock registrations of the group take, so a worker that brings the subscription back (status
 * `active` again) either did so before (refused) or registers it anew after (a new subscription).
 */
export async function forgetSubscription(
  pool: pg.Pool,
  ctx: SqlContext,
  args: { group: string; subscription: string; config?: ResolvedConfig },
): Promise<ForgetResult> {
  assertOptions(args, 'forgetSubscription', ['group', 'subscription', 'config']);
  if (args === undefined) throw new InvalidInputError('forgetSubscription needs { group, subscription }.');
  assertText(args.group, 'group');
  assertText(args.subscription, 'subscription');
  const { group, subscription } = args;
  const name = `${group}/${subscription}`;
  if (args.config?.groups.get(group)?.subscriptions.has(subscription))
    throw refused(
      `${name} is declared in the config: only a subscription no config declares can be forgotten.`,
      'Remove it from the config and deploy; once no worker runs it, es subscriptions shows it unknown.',
    );
  await assertSubscription(pool, ctx, group, subscription);
  return inTransaction(pool, async (client) => {
    await lockGroupRegistrations(client, ctx, group);
    const key = [group, subscription];
    const { rows } = await client.query<{ status: string; runners: number; leased: number }>(
      lockedStateSql(ctx),
      key,
    );
    const state = rows[0];
    if (!state) return { group, subscription, checkpoints: 0 };
    if (state.status !== 'unknown' || state.runners > 0)
      throw refused(
        `${name} is ${state.runners > 0 ? `run by ${state.runners} live worker(s)` : state.status}: only an unknown subscription (no live process runs it) can be forgotten.`,
        'Remove it from every config and stop the workers that run it; es subscriptions shows it unknown once none does.',
      );
    if (state.leased > 0)
      throw refused(
        `${name} has ${state.leased} checkpoint(s) leased right now.`,
        'Wait for the leases to end (es checkpoints), then forget it.',
      );
    const deleted = await client.query(deleteCheckpointsSql(ctx), key);
    await client.query(deleteSubscriptionSql(ctx), key);
    return { group, subscription, checkpoints: deleted.rowCount ?? 0 };
  });
}
