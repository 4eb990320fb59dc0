import type { Queryable, SqlContext } from '../db/queryable.js';
import { assertCheckpointSelector } from '../validation/options.js';
import { type CheckpointKey, type CheckpointSelector, checkpointId, selectorSql } from './checkpointId.js';

export interface CheckpointChange {
  id: string;
  group: string;
  subscription: string;
  stream: string;
  /** Status and attempts before the change. */
  wasStatus: string;
  wasAttempts: number;
  /** Stream position after the change. */
  position: number;
  /** es skip: the message moved past (its stream position and type). */
  skipped?: { position: number; type: string | null };
  lastErrorMessage: string | null;
}

export interface ChangeResult {
  changed: CheckpointChange[];
  /** Selected by id but not retry/failed (nothing to do). */
  notFailing: string[];
  /** Selected by id but held by a worker right now: try again in a moment. */
  busy: string[];
  /** Ids that match no checkpoint. */
  missing: string[];
}

interface ChangedRow {
  group_name: string;
  subscription_name: string;
  stream_name: string;
  was_status: string;
  was_attempts: number;
  stream_position: number;
  error_message: string | null;
  skipped_type: string | null;
}

/*
 * Only unleased checkpoints change: a worker holding one is in the middle of an attempt, and its
 * own write at the end would race ours. (`FOR UPDATE` makes a concurrent claim wait for us, or us
 * see its lease.)
 */
const changeSql = (ctx: SqlContext, where: string, set: string, extraSelect: string) => `
  WITH target AS (
    SELECT c.group_name, c.subscription_name, c.stream_name, c.status, c.attempts, c.stream_position,
           c.last_error ->> 'message' AS error_message ${extraSelect}
      FROM ${ctx.s}.checkpoints c
     WHERE ${where} AND c.status IN ('retry', 'failed')
       AND (c.leased_until IS NULL OR c.leased_until < now())
       FOR UPDATE OF c)
  UPDATE ${ctx.s}.checkpoints c SET ${set}, next_attempt_at = now(), updated_at = now(),
         leased_by = NULL, lease_id = NULL, leased_until = NULL
    FROM target t
   WHERE c.group_name = t.group_name AND c.subscription_name = t.subscription_name
     AND c.stream_name = t.stream_name
  RETURNING c.group_name, c.subscription_name, c.stream_name, t.status AS was_status,
            t.attempts AS was_attempts, c.stream_position, t.error_message, t.skipped_type`;

const statusOfSql = (ctx: SqlContext) => `
  SELECT c.group_name, c.subscription_name, c.stream_name, c.status,
         (c.leased_until IS NOT NULL AND c.leased_until >= now()) AS leased
    FROM ${ctx.s}.checkpoints c
    JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(g, s, st)
      ON c.group_name = k.g AND c.subscription_name = k.s AND c.stream_name = k.st`;

async function explain(
  db: Queryable,
  ctx: SqlContext,
  ids: CheckpointKey[],
  changed: CheckpointChange[],
): Promise<Omit<ChangeResult, 'changed'>> {
  const done = new Set(changed.map((c) => c.id));
  const rest = ids.filter((k) => !done.has(checkpointId(k)));
  if (rest.length === 0) return { notFailing: [], busy: [], missing: [] };
  const { rows } = await db.query<{
    group_name: string;
    subscription_name: string;
    stream_name: string;
    status: string;
    leased: boolean;
  }>(statusOfSql(ctx), [
    rest.map((k) => k.group),
    rest.map((k) => k.subscription),
    rest.map((k) => k.stream),
  ]);
  const found = new Map(
    rows.map((r) => [
      checkpointId({ group: r.group_name, subscription: r.subscription_name, stream: r.stream_name }),
      r,
    ]),
  );
  const out = { notFailing: [] as string[], busy: [] as string[], missing: [] as string[] };
  for (const k of rest) {
    const id = checkpointId(k);
    const r = found.get(id);
    if (!r) out.missing.push(id);
    else if (r.status === 'retry' || r.status === 'failed') out.busy.push(id);
    else out.notFailing.push(id);
  }
  return out;
}

function toChange(r: ChangedRow, skip: boolean): CheckpointChange {
  const key = { group: r.group_name, subscription: r.subscription_name, stream: r.stream_name };
  return {
    id: checkpointId(key),
    ...key,
    wasStatus: r.was_status,
    wasAttempts: r.was_attempts,
    position: r.stream_position,
    ...(skip ? { skipped: { position: r.stream_position, type: r.skipped_type } } : {}),
    lastErrorMessage: r.error_message,
  };
}

/**
 * Retry failing checkpoints now: status back to active with a fresh round of attempts, due at once.
 * The failing message is attempted again by the next worker that claims it.
 */
export async function retryCheckpoints(
  db: Queryable,
  ctx: SqlContext,
  sel: CheckpointSelector,
): Promise<ChangeResult> {
  assertCheckpointSelector(sel, 'retryCheckpoints');
  const { where, params } = selectorSql(sel, 1);
  const { rows } = await db.query<ChangedRow>(
    changeSql(ctx, where, `status = 'active', attempts = 0`, ', NULL::text AS skipped_type'),
    params,
  );
  const changed = rows.map((r) => toChange(r, false));
  return { changed, ...('ids' in sel ? await explain(db, ctx, sel.ids, changed) : emptyExplain) };
}

const emptyExplain = { notFailing: [], busy: [], missing: [] };

/**
 * Move failing checkpoints past the message that fails: its position counts as handled, attempts
 * and error are cleared, and the stream's next message is due at once.
 */
export async function skipCheckpoints(
  db: Queryable,
  ctx: SqlContext,
  sel: CheckpointSelector,
): Promise<ChangeResult> {
  assertCheckpointSelector(sel, 'skipCheckpoints');
  const { where, params } = selectorSql(sel, 1);
  const { rows } = await db.query<ChangedRow>(
    changeSql(
      ctx,
      where,
      `stream_position = t.stream_position + 1, status = 'active', attempts = 0, last_error = NULL`,
      `, (SELECT m.type FROM ${ctx.s}.messages m
           WHERE m.stream_name = c.stream_name AND m.stream_position = c.stream_position + 1) AS skipped_type`,
    ),
    params,
  );
  const changed = rows.map((r) => toChange(r, true));
  return { changed, ...('ids' in sel ? await explain(db, ctx, sel.ids, changed) : emptyExplain) };
}
