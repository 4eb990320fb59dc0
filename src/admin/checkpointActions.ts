import type { Queryable, SqlContext } from '../db/queryable.js';
import { InvalidInputError, NotFoundError } from '../errors.js';
import {
  type CheckpointKey,
  type CheckpointSelector,
  checkpointId,
  parseCheckpointId,
  selectorSql,
} from '../operations/checkpointId.js';
import { type ChangeResult, retryCheckpoints, skipCheckpoints } from '../operations/retryCheckpoints.js';
import { assertSubscription } from '../operations/subscriptionControl.js';
import { assertOneOf, assertOptions, assertText } from '../validation/options.js';

/** Which checkpoints an operator action applies to: ids (`group/subscription/stream`) or filters. */
export type CheckpointTarget =
  | { ids: string[] }
  | { group?: string; subscription?: string; status?: 'retry' | 'failed' };

/** Ids given that match no checkpoint: the others were still changed (see `result`). */
export class CheckpointsNotFoundError extends NotFoundError {
  readonly result: ChangeResult | ReleaseResult;
  constructor(missing: string[], result: ChangeResult | ReleaseResult) {
    super(
      `No checkpoint ${missing.join(', ')}.`,
      'Ids are group/subscription/stream; list them with es checkpoints.',
    );
    this.result = result;
  }
}

/** Check a target and resolve it to a selector; an unknown group or subscription is NotFoundError. */
export async function resolveTarget(
  db: Queryable,
  ctx: SqlContext,
  target: CheckpointTarget,
  what: string,
): Promise<CheckpointSelector> {
  if (typeof target !== 'object' || target === null)
    throw new InvalidInputError(`${what} needs { ids } or { group, subscription, status }.`);
  if ('ids' in target) {
    assertOptions(target, what, ['ids']);
    if (!Array.isArray(target.ids) || target.ids.length === 0)
      throw new InvalidInputError(
        `${what}: ids must be a non-empty array of checkpoint ids (group/subscription/stream).`,
        'List failing checkpoints with: es checkpoints --status failed',
      );
    return { ids: target.ids.map((id: unknown) => parseCheckpointId(String(id))) };
  }
  assertOptions(target, what, ['group', 'subscription', 'status']);
  assertText(target.group, 'group');
  assertText(target.subscription, 'subscription');
  assertOneOf(target.status, 'status', ['retry', 'failed']);
  if (target.subscription !== undefined && target.group === undefined)
    throw new InvalidInputError(`${what}: subscription goes with group.`);
  if (target.group !== undefined) await assertSubscription(db, ctx, target.group, target.subscription);
  return {
    ...(target.group ? { group: target.group } : {}),
    ...(target.subscription ? { subscription: target.subscription } : {}),
    ...(target.status ? { status: target.status } : {}),
  };
}

function throwIfMissing<R extends ChangeResult | ReleaseResult>(r: R): R {
  if (r.missing.length > 0) throw new CheckpointsNotFoundError(r.missing, r);
  return r;
}

/** Retry failing checkpoints now; ids that match nothing: CheckpointsNotFoundError (the rest are retried). */
export async function retry(db: Queryable, ctx: SqlContext, sel: CheckpointSelector): Promise<ChangeResult> {
  return throwIfMissing(await retryCheckpoints(db, ctx, sel));
}

/** Move failing checkpoints past their failing message; ids that match nothing: CheckpointsNotFoundError. */
export async function skip(db: Queryable, ctx: SqlContext, sel: CheckpointSelector): Promise<ChangeResult> {
  return throwIfMissing(await skipCheckpoints(db, ctx, sel));
}

export interface ReleaseResult {
  /** Checkpoints whose lease was dropped (the holder's next write finds its lease lost). */
  released: { id: string; leasedBy: string | null; leasedUntil: Date | null }[];
  /** Selected by id but not leased. */
  notLeased: string[];
  missing: string[];
}

/**
 * Drop the leases of checkpoints (a worker that hangs, or is gone without releasing): they become
 * claimable at once. A worker still holding one finds its lease lost at its next write and stops.
 */
export async function release(
  db: Queryable,
  ctx: SqlContext,
  sel: CheckpointSelector,
): Promise<ReleaseResult> {
  const { where, params } = selectorSql(sel, 1);
  const { rows } = await db.query<{
    group_name: string;
    subscription_name: string;
    stream_name: string;
    leased_by: string | null;
    leased_until: Date | null;
  }>(
    `WITH target AS (
       SELECT c.group_name, c.subscription_name, c.stream_name, c.leased_by, c.leased_until
         FROM ${ctx.s}.checkpoints c WHERE ${where} AND c.leased_until IS NOT NULL FOR UPDATE OF c)
     UPDATE ${ctx.s}.checkpoints c
        SET leased_by = NULL, lease_id = NULL, leased_until = NULL, next_attempt_at = now(), updated_at = now()
       FROM target t
      WHERE c.group_name = t.group_name AND c.subscription_name = t.subscription_name
        AND c.stream_name = t.stream_name
     RETURNING c.group_name, c.subscription_name, c.stream_name, t.leased_by, t.leased_until`,
    params,
  );
  const released = rows.map((r) => ({
    id: checkpointId({ group: r.group_name, subscription: r.subscription_name, stream: r.stream_name }),
    leasedBy: r.leased_by,
    leasedUntil: r.leased_until,
  }));
  const result: ReleaseResult = { released, notLeased: [], missing: [] };
  if ('ids' in sel) {
    const done = new Set(released.map((r) => r.id));
    const rest = sel.ids.filter((k) => !done.has(checkpointId(k)));
    const existing = await existingIds(db, ctx, rest);
    for (const k of rest) {
      const id = checkpointId(k);
      (existing.has(id) ? result.notLeased : result.missing).push(id);
    }
  }
  return throwIfMissing(result);
}

async function existingIds(db: Queryable, ctx: SqlContext, keys: CheckpointKey[]): Promise<Set<string>> {
  if (keys.length === 0) return new Set();
  const { rows } = await db.query<{ group_name: string; subscription_name: string; stream_name: string }>(
    `SELECT c.group_name, c.subscription_name, c.stream_name FROM ${ctx.s}.checkpoints c
      WHERE ${selectorSql({ ids: keys }, 1).where}`,
    selectorSql({ ids: keys }, 1).params,
  );
  return new Set(
    rows.map((r) =>
      checkpointId({ group: r.group_name, subscription: r.subscription_name, stream: r.stream_name }),
    ),
  );
}
