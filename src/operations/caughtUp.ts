import type { ResolvedConfig } from '../config/types.js';
import type { Queryable, SqlContext } from '../db/queryable.js';
import { lagSnapshot } from './lagSnapshot.js';
import { subscriptionFilters } from './subscriptionFilters.js';

/** Where a group stands for `es worker --exit-when-caught-up`. */
export type CaughtUp =
  /** Some subscription has work left that a worker will do. */
  | { done: false }
  /** Every subscription has no lag (`failed` is 0), or what is left is only in failed checkpoints. */
  | { done: true; failed: number };

/**
 * Whether every subscription of the group (as the config declares it) has handled every message
 * committed so far. Work left only in failed checkpoints counts as done (no worker retries those),
 * with their count, so a script can tell a clean run from one that left failures.
 */
export async function groupCaughtUp(
  db: Queryable,
  ctx: SqlContext,
  config: ResolvedConfig,
  group: string,
): Promise<CaughtUp> {
  const declared = [...(config.groups.get(group)?.subscriptions.keys() ?? [])];
  const snapshot = await lagSnapshot(db, ctx, { subscriptions: subscriptionFilters(config), group });
  const subs = snapshot.groups.find((g) => g.name === group)?.subscriptions ?? [];
  let failed = 0;
  for (const name of declared) {
    const s = subs.find((x) => x.name === name);
    if (!s) return { done: false };
    if (s.lag === 0) continue;
    // Only failed checkpoints have work: every stream behind is a failed one, nothing undispatched.
    if (s.retry === 0 && s.undispatched === 0 && s.failed > 0 && s.streamsBehind <= s.failed) {
      failed += s.failed;
      continue;
    }
    return { done: false };
  }
  return { done: true, failed };
}
