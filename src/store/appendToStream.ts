import { messageLockKeys, messagesLockKeys, takeLocksSql, takeTwoLocksSql } from '../consistency/lockKeys.js';
import { runFirstValue } from '../db/pipeline.js';
import type { Queryable, SqlContext } from '../db/queryable.js';
import { statement } from '../db/queryable.js';
import { SqlState, sqlStateOf } from '../db/sqlstate.js';
import { WrongExpectedVersionError } from '../errors.js';
import type { AppendBatcher } from './appendBatcher.js';
import { WakeupCarrier } from './notifications.js';
import { streamVersion } from './readStream.js';
import type { AppendResult, ExpectedVersion, Metadata } from './types.js';

/** Raised by append_to_stream() on a version mismatch; DETAIL carries the actual version. */
const WRONG_VERSION_STATE = 'BKV01';
const TAG_SEPARATOR = '\u001f';

export interface PreparedMessage {
  id: string;
  type: string;
  data: unknown;
  metadata: Metadata;
  tags: string[];
}

export function expectedVersionCode(expected: ExpectedVersion): number {
  if (expected === 'any') return -1;
  if (expected === 'stream_exists') return -2;
  if (expected === 'no_stream') return 0;
  return expected;
}

const sql = (ctx: SqlContext) =>
  `SELECT stream_version, last_global_position FROM ${ctx.s}.append_to_stream($1, $2, $3, $4, $5, $6, $7)`;

/**
 * Append messages to one stream in one round trip (see append_to_stream() in migrations 0001 and
 * 0006). Writes nothing when the expected version does not match.
 */
export async function appendToStream(
  db: Queryable,
  ctx: SqlContext,
  stream: string,
  expected: ExpectedVersion,
  messages: PreparedMessage[],
  batcher?: AppendBatcher,
  /** The append's wake-up carrier (db, on the store's pool): told when a batch carried it. */
  carrier?: WakeupCarrier,
): Promise<AppendResult> {
  const exact = typeof expected === 'number' || expected === 'no_stream';
  if (exact && messages.length === 1)
    return appendOneExact(db, ctx, stream, expected, messages[0]!, batcher, carrier);
  if (exact) return appendManyExact(db, ctx, stream, expected, messages);
  const values = [
    stream,
    expectedVersionCode(expected),
    messages.map((m) => m.id),
    messages.map((m) => m.type),
    messages.map((m) => JSON.stringify(m.data)),
    messages.map((m) => JSON.stringify(m.metadata)),
    messages.map((m) => m.tags.join(TAG_SEPARATOR)),
  ];
  try {
    const { rows } = await db.query<{ stream_version: number; last_global_position: number }>(
      statement(ctx, 'append', sql(ctx), values),
    );
    const row = rows[0]!;
    return { streamVersion: row.stream_version, globalPosition: row.last_global_position };
  } catch (err) {
    const state = sqlStateOf(err);
    if (state === WRONG_VERSION_STATE) {
      throw new WrongExpectedVersionError(stream, expected, Number((err as { detail?: string }).detail ?? 0));
    }
    // Another writer took the position first: an exact expected version lost its race (appends
    // with an exact version take no lock, see migration 0006). The actual version is unknown here
    // (-1): inside a failed transaction nothing more can be read; the store looks it up.
    if (isPositionTaken(err)) throw new WrongExpectedVersionError(stream, expected, UNKNOWN_VERSION);
    throw err;
  }
}

export const TAG_SEPARATOR_CHAR = TAG_SEPARATOR;

/*
 * The common case, one message with an exact expected version, as a single INSERT with scalar
 * parameters: no function call, no arrays. It writes position N+1 only if the stream's head (its
 * highest position, one backward probe of the (stream_name, stream_position) index) is N: not
 * merely if position N exists or, for N = 0, position 1 is free. Retention deletes a stream's
 * first messages (and, by age, any message older than its successors) but never its head, so
 * the head is the stream's real version and a deleted position is never written again. A
 * concurrent appender that took N+1 first makes it fail on the unique constraint, like
 * append_to_stream() in migration 0012. It takes the message's advisory lock keys, shared
 * (src/consistency/lockKeys.ts), so that conditional appends see it. A tagged message also gets
 * its message_tags rows (migration 0007) from the same statement; an untagged one skips that part
 * of the plan.
 */

/**
 * The CTE `tagged` that writes the message_tags rows (migration 0007) of what the CTE `inserted`
 * returned (its global_position, transaction_id, type and tags): every client-side INSERT of
 * tagged messages ends with it.
 */
export const taggedCte = (ctx: SqlContext) => `tagged AS (
     INSERT INTO ${ctx.s}.message_tags (tag, transaction_id, global_position, type)
     SELECT DISTINCT g.tag, i.transaction_id, i.global_position, i.type
       FROM inserted i CROSS JOIN LATERAL unnest(i.tags) AS g(tag)
   )`;

/** A message's tags as text[], from their joined form (TAG_SEPARATOR, '' for none) in `joined`. */
export const splitTagsSql = (joined: string) =>
  `CASE WHEN ${joined} = '' THEN '{}'::text[] ELSE string_to_array(${joined}, chr(31)) END`;

/** The stream's head (0 without messages) for the stream named by `stream` (SQL text). */
export const headSql = (ctx: SqlContext, stream: string) =>
  `coalesce((SELECT max(h.stream_position) FROM ${ctx.s}.messages h WHERE h.stream_name = ${stream}), 0)`;

const appendOneSqlText = (ctx: SqlContext, tagged: boolean) => {
  // The head check, then the message's lock keys (shared): taken before its position is drawn. An
  // untagged message has two ($7 and $8: (*, *) and (type, *)), a tagged one more ($8, an array).
  if (!tagged)
    return `INSERT INTO ${ctx.s}.messages (id, stream_name, stream_position, type, data, metadata, tags)
     SELECT $1, $2, $3::bigint + 1, $4, $5, $6, '{}'::text[]
      WHERE ${headSql(ctx, '$2')} = $3::bigint AND ${takeTwoLocksSql(ctx.s, '$7::text', '$8::text')}
     RETURNING global_position`;
  const insert = `INSERT INTO ${ctx.s}.messages (id, stream_name, stream_position, type, data, metadata, tags)
     SELECT $1, $2, $3::bigint + 1, $4, $5, $6, $7
      WHERE ${headSql(ctx, '$2')} = $3::bigint AND ${takeLocksSql(ctx.s, '$8::text[]')} > 0`;
  return `WITH inserted AS (
     ${insert}
     RETURNING global_position, transaction_id, type, tags
   ), ${taggedCte(ctx)}
   SELECT global_position FROM inserted`;
};

// The text per statement, schema and shape, built once (it is sent with every append of that shape).
const sqlTexts = new Map<string, string>();
function cachedSql(
  build: (ctx: SqlContext, tagged: boolean) => string,
  name: string,
  ctx: SqlContext,
  tagged: boolean,
): string {
  const key = `${name}${tagged ? 't' : 'u'}${ctx.s}`;
  let text = sqlTexts.get(key);
  if (text === undefined) {
    text = build(ctx, tagged);
    sqlTexts.set(key, text);
  }
  return text;
}

/*
 * Several messages to one stream with an exact expected version N: one INSERT of positions
 * N+1..N+k with array parameters, under the same rules as the single INSERT (the head check, the
 * messages' lock keys taken shared before any position is drawn, a taken position failing on the
 * unique constraint, the tags rows from the same statement when a message has tags). Global
 * positions follow stream positions (ORDER BY u.ord). append_to_stream() (migration 0012) does the
 * same for SQL callers and for 'any' and 'stream_exists'; this one statement skips its plpgsql
 * call and, for untagged messages, the tags part of the plan.
 */
const appendManySqlText = (ctx: SqlContext, tagged: boolean) => {
  const insert = `INSERT INTO ${ctx.s}.messages (id, stream_name, stream_position, type, data, metadata, tags)
     SELECT u.id, $1::text, $2::bigint + u.ord, u.type, u.data, u.metadata, ${
       tagged ? splitTagsSql('u.tags') : `'{}'::text[]`
     }
       FROM unnest($3::uuid[], $4::text[], $5::jsonb[], $6::jsonb[]${tagged ? ', $8::text[]' : ''})
            WITH ORDINALITY AS u(id, type, data, metadata, ${tagged ? 'tags, ' : ''}ord)
      WHERE ${headSql(ctx, '$1::text')} = $2::bigint AND ${takeLocksSql(ctx.s, '$7::text[]')} > 0
      ORDER BY u.ord`;
  const returning = tagged ? 'global_position, transaction_id, type, tags' : 'global_position';
  return `WITH inserted AS (
     ${insert}
     RETURNING ${returning}
   )${tagged ? `, ${taggedCte(ctx)}` : ''}
   SELECT max(global_position) AS last_global_position FROM inserted`;
};

/** Several messages with an exact expected version, as one INSERT (see appendManySqlText). */
async function appendManyExact(
  db: Queryable,
  ctx: SqlContext,
  stream: string,
  expected: ExpectedVersion,
  messages: PreparedMessage[],
): Promise<AppendResult> {
  const tagged = messages.some((m) => m.tags.length > 0);
  const n = expectedVersionCode(expected);
  const values: unknown[] = [
    stream,
    n,
    messages.map((m) => m.id),
    messages.map((m) => m.type),
    messages.map((m) => JSON.stringify(m.data)),
    messages.map((m) => JSON.stringify(m.metadata)),
    messagesLockKeys(messages),
  ];
  if (tagged) values.push(messages.map((m) => m.tags.join(TAG_SEPARATOR)));
  return exactOutcome(db, ctx, stream, expected, messages.length, async () => {
    const { rows } = await db.query<{ last_global_position: number | null }>(
      statement(
        ctx,
        `append_many${tagged ? '_tagged' : ''}`,
        cachedSql(appendManySqlText, 'many', ctx, tagged),
        values,
      ),
    );
    // No row inserted (the stream is not at version N): max() is null.
    return rows[0]?.last_global_position ?? null;
  });
}

/**
 * The result of an exact append of `count` messages whose insert (`run`) returns the last global
 * position, or null when the stream was not at the expected version (nothing was written): then
 * WrongExpectedVersionError with the version read here (inside a caller's transaction a read is
 * still possible: nothing failed). A position taken by a concurrent appender is a lost race, its
 * actual version left to the store (UNKNOWN_VERSION).
 */
async function exactOutcome(
  db: Queryable,
  ctx: SqlContext,
  stream: string,
  expected: ExpectedVersion,
  count: number,
  run: () => Promise<number | null>,
): Promise<AppendResult> {
  let globalPosition: number | null;
  try {
    globalPosition = await run();
  } catch (err) {
    if (isPositionTaken(err)) throw new WrongExpectedVersionError(stream, expected, UNKNOWN_VERSION);
    throw err;
  }
  if (globalPosition === null)
    throw new WrongExpectedVersionError(stream, expected, await streamVersion(db, ctx, stream));
  return { streamVersion: expectedVersionCode(expected) + count, globalPosition };
}

/** One message for the single INSERT, its payload already JSON text. */
export interface SingleInsert {
  id: string;
  stream: string;
  /** The expected version N (0 for no stream): the message goes to position N + 1. */
  n: number;
  type: string;
  data: string;
  metadata: string;
  tags: string[];
}

/**
 * The single INSERT: the new message's global position, or null when the stream's head is not N.
 * A taken position N + 1 throws (unique violation, see isPositionTaken).
 */
export async function insertOne(db: Queryable, ctx: SqlContext, m: SingleInsert): Promise<number | null> {
  const tagged = m.tags.length > 0;
  const keys = messageLockKeys(m);
  const insert = statement(
    ctx,
    `append_one${tagged ? '_tagged' : ''}`,
    cachedSql(appendOneSqlText, 'one', ctx, tagged),
    tagged
      ? [m.id, m.stream, m.n, m.type, m.data, m.metadata, m.tags, keys]
      : [m.id, m.stream, m.n, m.type, m.data, m.metadata, keys[0], keys[1]],
  );
  // Its one value read as it comes (runFirstValue): the hot path of every single append.
  const position =
    db instanceof WakeupCarrier ? await db.firstValue(insert) : await runFirstValue(db, insert);
  return position == null ? null : Number(position);
}

/** The outcome of one exact single append, run alone or through the store's group commit. */
async function appendOneExact(
  db: Queryable,
  ctx: SqlContext,
  stream: string,
  expected: ExpectedVersion,
  m: PreparedMessage,
  batcher: AppendBatcher | undefined,
  carrier?: WakeupCarrier,
): Promise<AppendResult> {
  const one: SingleInsert = {
    id: m.id,
    stream,
    n: expectedVersionCode(expected),
    type: m.type,
    data: JSON.stringify(m.data),
    metadata: JSON.stringify(m.metadata),
    tags: m.tags,
  };
  // Null: the stream's head is not N (or, in a batch, N + 1 was taken).
  return exactOutcome(db, ctx, stream, expected, 1, () =>
    batcher ? batcher.append(one, carrier) : insertOne(db, ctx, one),
  );
}

/** The `actual` of a WrongExpectedVersionError raised by a lost race, before the store looks it up. */
export const UNKNOWN_VERSION = -1;

/** A unique violation on (stream_name, stream_position): someone else appended at that position. */
export function isPositionTaken(err: unknown): boolean {
  return (
    sqlStateOf(err) === SqlState.uniqueViolation &&
    (err as { constraint?: string }).constraint === 'messages_stream_position_key'
  );
}
