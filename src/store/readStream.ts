import type { Queryable, SqlContext } from '../db/queryable.js';
import { statement } from '../db/queryable.js';
import { MESSAGE_COLUMNS, type MessageRow, rowToMessage } from './rowToMessage.js';
import type { ReadStreamOptions, RecordedMessage } from './types.js';

const forwardSql = (ctx: SqlContext) =>
  `SELECT ${MESSAGE_COLUMNS} FROM ${ctx.s}.messages
    WHERE stream_name = $1 AND stream_position >= $2
    ORDER BY stream_position LIMIT $3`;

const backwardSql = (ctx: SqlContext) =>
  `SELECT ${MESSAGE_COLUMNS} FROM ${ctx.s}.messages
    WHERE stream_name = $1 AND stream_position <= $2
    ORDER BY stream_position DESC LIMIT $3`;

/** Messages of one stream, in stream order (or reverse). Committed messages only. */
export async function readStream(
  db: Queryable,
  ctx: SqlContext,
  stream: string,
  opts: ReadStreamOptions = {},
): Promise<RecordedMessage[]> {
  const limit = opts.limit ?? 1000;
  const backward = opts.direction === 'backward';
  const from = opts.from ?? (backward ? Number.MAX_SAFE_INTEGER : 1);
  const q = backward
    ? statement(ctx, 'read_stream_bwd', backwardSql(ctx), [stream, from, limit])
    : statement(ctx, 'read_stream_fwd', forwardSql(ctx), [stream, from, limit]);
  const { rows } = await db.query<MessageRow>(q);
  return rows.map(rowToMessage);
}

const versionSql = (ctx: SqlContext) =>
  `SELECT coalesce(max(stream_position), 0) AS version FROM ${ctx.s}.messages WHERE stream_name = $1`;

/** The stream's version: its last position, 0 when it does not exist. */
export async function streamVersion(db: Queryable, ctx: SqlContext, stream: string): Promise<number> {
  const { rows } = await db.query<{ version: number }>(
    statement(ctx, 'stream_version', versionSql(ctx), [stream]),
  );
  return rows[0]?.version ?? 0;
}
