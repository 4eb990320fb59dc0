import type { Queryable, SqlContext } from '../db/queryable.js';
import { statement } from '../db/queryable.js';
import { MESSAGE_COLUMNS, type MessageRow, rowToMessage } from '../store/rowToMessage.js';
import type { RecordedMessage } from '../store/types.js';
import { CLAIMABLE_STATUSES } from './registerSubscriptions.js';
import type { StoredError } from './retryPolicy.js';

/*
 * Checkpoint leases. A consumer claims one lagging, due checkpoint whose lease is free or expired,
 * in a single statement (FOR UPDATE SKIP LOCKED: concurrent claimers pass over each other's rows
 * instead of queueing). The claim writes a fresh lease_id; every later write by that consumer
 * (extend, advance, fail, release) is conditional on that lease_id, so a consumer whose lease
 * expired and was taken over can never move the checkpoint again. One holder at a time is what
 * keeps a stream's messages in order.
 */

export interface ClaimedCheckpoint {
  group: string;
  subscription: string;
  stream: string;
  streamPosition: number;
  streamVersion: number;
  attempts: number;
  status: 'active' | 'retry' | 'failed';
  leaseId: string;
}

interface ClaimRow extends Partial<Omit<MessageRow, 'stream_name' | 'stream_position'>> {
  cp_subscription: string;
  cp_stream: string;
  cp_position: number;
  cp_version: number;
  cp_attempts: number;
  cp_status: ClaimedCheckpoint['status'];
  lease_id: string;
  cp_replay_until: number | null;
  stream_name: string | null;
  stream_position: number | null;
}

// Claim order is next_attempt_at, which every release moves to now(): streams take turns, so a long
// stream re-claimed batch after batch cannot starve the others. The claimed stream's next batch is
// read in the same statement (one round trip less per claim; the batch size is the subscription's),
// and not past the end of a replay range (see migration 0005).
const claimSql = (ctx: SqlContext) =>
  `WITH claimed AS (
     UPDATE ${ctx.s}.checkpoints AS c
        SET leased_by = $3, lease_id = gen_random_uuid(),
            leased_until = now() + make_interval(secs => $4::float8 / 1000), updated_at = now()
       FROM (SELECT k.group_name, k.subscription_name, k.stream_name
               FROM ${ctx.s}.checkpoints k
               JOIN ${ctx.s}.subscriptions s ON s.group_name = k.group_name AND s.name = k.subscription_name
              WHERE k.group_name = $1 AND k.subscription_name = ANY($2::text[])
                AND k.stream_position < k.stream_version
                AND k.status <> 'failed'
                AND k.next_attempt_at <= now()
                AND (k.leased_until IS NULL OR k.leased_until < now())
                AND s.status = ANY($5::text[])
              ORDER BY k.next_attempt_at
              LIMIT 1
              FOR UPDATE OF k SKIP LOCKED) AS pick
      WHERE c.group_name = pick.group_name AND c.subscription_name = pick.subscription_name
        AND c.stream_name = pick.stream_name
     RETURNING c.subscription_name AS cp_subscription, c.stream_name AS cp_stream,
               c.stream_position AS cp_position, c.stream_version AS cp_version,
               c.attempts AS cp_attempts, c.status AS cp_status, c.lease_id::text AS lease_id,
               c.replay_until AS cp_replay_until)
   SELECT claimed.*, m.*
     FROM claimed
     LEFT JOIN LATERAL (
       SELECT ${MESSAGE_COLUMNS} FROM ${ctx.s}.messages
        WHERE stream_name = claimed.cp_stream AND stream_position > claimed.cp_position
          AND (claimed.cp_replay_until IS NULL OR stream_position <= claimed.cp_replay_until)
        ORDER BY stream_position
        LIMIT ($6::int[])[array_position($2::text[], claimed.cp_subscription)]) m ON true
    ORDER BY m.stream_position`;

/**
 * Claim one checkpoint of the group for `workerId`, with the next messages of its stream (up to the
 * subscription's batch size, `batchSizes[i]` for `subscriptions[i]`); undefined when none is ready.
 */
export async function claimCheckpoint(
  db: Queryable,
  ctx: SqlContext,
  args: { group: string; subscriptions: string[]; batchSizes: number[]; workerId: string; leaseMs: number },
): Promise<(ClaimedCheckpoint & { messages: RecordedMessage[] }) | undefined> {
  const { rows } = await db.query<ClaimRow>(
    statement(ctx, 'claim_checkpoint', claimSql(ctx), [
      args.group,
      args.subscriptions,
      args.workerId,
      args.leaseMs,
      CLAIMABLE_STATUSES,
      args.batchSizes,
    ]),
  );
  const r = rows[0];
  if (!r) return undefined;
  return {
    group: args.group,
    subscription: r.cp_subscription,
    stream: r.cp_stream,
    streamPosition: r.cp_position,
    streamVersion: r.cp_version,
    attempts: r.cp_attempts,
    status: r.cp_status,
    leaseId: r.lease_id,
    messages: r.stream_name === null ? [] : rows.map((row) => rowToMessage(row as unknown as MessageRow)),
  };
}

const KEY = 'group_name = $1 AND subscription_name = $2 AND stream_name = $3 AND lease_id = $4::uuid';
const keyParams = (c: ClaimedCheckpoint) => [c.group, c.subscription, c.stream, c.leaseId];

const extendSql = (ctx: SqlContext) =>
  `UPDATE ${ctx.s}.checkpoints
      SET leased_until = now() + make_interval(secs => $5::float8 / 1000)
    WHERE ${KEY}`;

/** Push the lease's expiry forward. Resolves false when the lease is no longer ours. */
export async function extendLease(
  db: Queryable,
  ctx: SqlContext,
  claim: ClaimedCheckpoint,
  leaseMs: number,
): Promise<boolean> {
  const r = await db.query(statement(ctx, 'extend_lease', extendSql(ctx), [...keyParams(claim), leaseMs]));
  return (r.rowCount ?? 0) > 0;
}

// Success: progress recorded, any retry state cleared, lease dropped, and the checkpoint goes to the
// back of the claim order. Still lagging (a longer stream, or messages that arrived meanwhile), it
// stays claimable.
const completeSql = (ctx: SqlContext) =>
  `UPDATE ${ctx.s}.checkpoints
      SET stream_position = GREATEST(stream_position, $5),
          status = CASE WHEN $5 > stream_position THEN 'active' ELSE status END,
          attempts = CASE WHEN $5 > stream_position THEN 0 ELSE attempts END,
          last_error = CASE WHEN $5 > stream_position THEN NULL ELSE last_error END,
          next_attempt_at = CASE WHEN $5 > stream_position THEN now() ELSE next_attempt_at END,
          leased_by = NULL, lease_id = NULL, leased_until = NULL, updated_at = now()
    WHERE ${KEY}`;

/**
 * Record progress up to `position` and drop the lease. Resolves false when the lease was lost (the
 * write did not happen; in a transaction, the caller must roll back).
 */
export async function completeCheckpoint(
  db: Queryable,
  ctx: SqlContext,
  claim: ClaimedCheckpoint,
  position: number,
): Promise<boolean> {
  const r = await db.query(
    statement(ctx, 'complete_checkpoint', completeSql(ctx), [...keyParams(claim), position]),
  );
  return (r.rowCount ?? 0) > 0;
}

const failSql = (ctx: SqlContext) =>
  `UPDATE ${ctx.s}.checkpoints
      SET stream_position = GREATEST(stream_position, $5),
          status = $6, attempts = $7, last_error = $8::jsonb,
          next_attempt_at = now() + make_interval(secs => $9::float8 / 1000),
          leased_by = NULL, lease_id = NULL, leased_until = NULL, updated_at = now()
    WHERE ${KEY}`;

/** Record a handler failure: progress before it, retry (or failed) status, error, next attempt. */
export async function failCheckpoint(
  db: Queryable,
  ctx: SqlContext,
  claim: ClaimedCheckpoint,
  args: {
    position: number;
    status: 'retry' | 'failed';
    attempts: number;
    error: StoredError;
    delayMs: number;
  },
): Promise<boolean> {
  const r = await db.query(
    statement(ctx, 'fail_checkpoint', failSql(ctx), [
      ...keyParams(claim),
      args.position,
      args.status,
      args.attempts,
      JSON.stringify(args.error),
      args.delayMs,
    ]),
  );
  return (r.rowCount ?? 0) > 0;
}

const releaseWorkerSql = (ctx: SqlContext) =>
  `UPDATE ${ctx.s}.checkpoints SET leased_by = NULL, lease_id = NULL, leased_until = NULL
    WHERE leased_by = $1`;

/**
 * Drop every lease a worker holds. Only for a worker that has stopped (after its drain, or by the
 * supervisor once the process is known dead): a live holder would lose its exclusivity.
 */
export async function releaseWorkerLeases(db: Queryable, ctx: SqlContext, workerId: string): Promise<number> {
  const r = await db.query(releaseWorkerSql(ctx), [workerId]);
  return r.rowCount ?? 0;
}
