import type pg from 'pg';
import type { SqlContext } from '../db/queryable.js';
import { statement } from '../db/queryable.js';
import { type MessageRow, rowToMessage } from '../store/rowToMessage.js';
import type { RecordedMessage } from '../store/types.js';
import { type ClaimedCheckpoint, nextMessagesSql } from './claimCheckpoint.js';

/*
 * The next batch of a claimed stream, for a claim made without it: a worker with a read replica
 * (`createWorker({ readPool })`, `es worker --read-url`) reads catch-up there, so that a subscription
 * working through history loads the replica, not the primary.
 *
 * A replica lags, and a batch read from it must never miss a message the checkpoint was raised
 * for: the handler would skip it for good. A stream's messages commit in position order (a writer
 * reaches position N+1 only once N is committed: the unique (stream_name, stream_position)), and a
 * standby replays commits in the primary's order, so a replica holding the stream's message at the
 * checkpoint's version holds every message before it. The read asks for the stream's head with the
 * batch; below the version, the batch is read again from the primary. So is it when the replica
 * cannot be reached.
 */
const batchSql = (ctx: SqlContext) =>
  `SELECT h.head, m.*
     FROM (SELECT max(stream_position) AS head FROM ${ctx.s}.messages WHERE stream_name = $1) h
     LEFT JOIN LATERAL (${nextMessagesSql(ctx, { stream: '$1', after: '$2', replayUntil: '$4::bigint', limit: '$3' })}) m ON true
    ORDER BY m.stream_position`;

type BatchRow = Partial<MessageRow> & { head: number | null };

async function readBatch(
  db: pg.Pool,
  ctx: SqlContext,
  claim: ClaimedCheckpoint,
  limit: number,
): Promise<{ head: number | null; messages: RecordedMessage[] }> {
  const { rows } = await db.query<BatchRow>(
    statement(ctx, 'claimed_batch', batchSql(ctx), [
      claim.stream,
      claim.streamPosition,
      limit,
      claim.replayUntil ?? null,
    ]),
  );
  return {
    head: rows[0]?.head == null ? null : Number(rows[0].head),
    messages: rows.filter((r) => r.stream_name != null).map((r) => rowToMessage(r as MessageRow)),
  };
}

export interface ClaimedBatch {
  messages: RecordedMessage[];
  /** Where it was read: the replica, or the primary (no replica, or it lagged or failed). */
  from: 'replica' | 'primary';
}

/**
 * The claimed stream's next `limit` messages after the checkpoint (not past a replay range): from
 * `readPool` when it has replayed the stream up to the checkpoint's version, otherwise from `pool`.
 * A replica that fails is reported to `onReplicaError` and the primary answers.
 */
export async function readClaimedBatch(
  pool: pg.Pool,
  readPool: pg.Pool | undefined,
  ctx: SqlContext,
  claim: ClaimedCheckpoint,
  limit: number,
  onReplicaError?: (err: unknown) => void,
): Promise<ClaimedBatch> {
  if (readPool) {
    try {
      const read = await readBatch(readPool, ctx, claim, limit);
      if (read.head !== null && read.head >= claim.streamVersion)
        return { messages: read.messages, from: 'replica' };
    } catch (err) {
      onReplicaError?.(err);
    }
  }
  return { messages: (await readBatch(pool, ctx, claim, limit)).messages, from: 'primary' };
}
