import type { Queryable, SqlContext } from '../db/queryable.js';
import { InvalidInputError, NotFoundError } from '../errors.js';
import type { MessageStore } from '../store/messageStore.js';
import { upcast } from '../store/messageTypes.js';
import { MESSAGE_COLUMNS, type MessageRow, rowToMessage } from '../store/rowToMessage.js';
import { LOG_START, type LogPosition, type RecordedMessage } from '../store/types.js';
import { assertReadByQueryOptions, assertReadForDecisionOptions } from '../validation/options.js';
import { quoteValue } from '../validation/quoteValue.js';
import { Query } from './query.js';

export interface ReadByQueryOptions {
  /** Read messages after this log position (or after the message at this global position). */
  after?: LogPosition | number;
  /** Most messages to return. Default 1000. */
  limit?: number;
}

export interface ReadByQueryResult {
  messages: RecordedMessage[];
  /**
   * Where to continue from, and the position a decision based on these messages was made at
   * (pass it as a condition's `after`). Unchanged when nothing was read.
   */
  position: LogPosition;
}

/**
 * The query as SQL: items OR'd; an item with tags finds its messages through message_tags by its
 * first tag (every match carries it), then checks `tags @>` all of them and `type = ANY(...)`.
 * Parameters start at `first`; returns the filter and its values.
 */
export function queryFilter(
  ctx: SqlContext,
  query: Query,
  first: number,
): { sql: string; values: unknown[] } {
  if (query.matchesAll) return { sql: 'true', values: [] };
  const values: unknown[] = [];
  const param = (v: unknown) => {
    values.push(v);
    return `$${first + values.length - 1}`;
  };
  const parts = query.items.map((item) => {
    const conds: string[] = [];
    if (item.tags?.length) {
      const tags = param(item.tags);
      conds.push(
        `global_position IN (SELECT t.global_position FROM ${ctx.s}.message_tags t WHERE t.tag = (${tags}::text[])[1])`,
        `tags @> ${tags}::text[]`,
      );
    }
    if (item.types?.length) conds.push(`type = ANY(${param(item.types)}::text[])`);
    return `(${conds.join(' AND ')})`;
  });
  return { sql: parts.length === 1 ? parts[0]! : `(${parts.join(' OR ')})`, values };
}

/*
 * Gap-safe like readLog(): ordered by (transaction_id, global_position) and only below the oldest
 * running transaction, so nothing can later appear before the returned position. That is what
 * makes the position safe to use as a condition's `after`.
 */
const readSql = (ctx: SqlContext, filter: string) =>
  `SELECT ${MESSAGE_COLUMNS} FROM ${ctx.s}.messages
    WHERE (transaction_id, global_position) > ($1::xid8, $2::bigint)
      AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
      AND ${filter}
    ORDER BY transaction_id, global_position
    LIMIT $3`;

/** The log position of the message at a global position (0: the start of the log). */
export async function logPositionOf(
  db: Queryable,
  ctx: SqlContext,
  globalPosition: number,
): Promise<LogPosition> {
  if (globalPosition === 0) return LOG_START;
  const { rows } = await db.query<{ transaction_id: string }>(
    `SELECT transaction_id FROM ${ctx.s}.messages WHERE global_position = $1`,
    [globalPosition],
  );
  const row = rows[0];
  if (!row)
    throw new NotFoundError(
      `No message at global position ${globalPosition}.`,
      'Continue from the global position of a message you read.',
    );
  return { transactionId: row.transaction_id, globalPosition };
}

/** Throws InvalidInputError unless `query` is a Query (Query.of, Query.where, Query.all). */
export function assertQuery(query: unknown): asserts query is Query {
  if (!(query instanceof Query))
    throw new InvalidInputError(
      `Expected a Query, got ${quoteValue(query)}.`,
      "Build one with Query.where({ tags: ['order:1'] }), Query.of(...) or Query.all().",
    );
}

/** Read the messages matching a query, in log order, gap-safe. */
export async function readByQuery(
  db: Queryable,
  ctx: SqlContext,
  query: Query,
  opts: ReadByQueryOptions = {},
): Promise<ReadByQueryResult> {
  assertQuery(query);
  assertReadByQueryOptions(opts);
  const after =
    typeof opts.after === 'number' ? await logPositionOf(db, ctx, opts.after) : (opts.after ?? LOG_START);
  const limit = opts.limit ?? 1000;
  const filter = queryFilter(ctx, query, 4);
  const { rows } = await db.query<MessageRow>(readSql(ctx, filter.sql), [
    after.transactionId,
    after.globalPosition,
    limit,
    ...filter.values,
  ]);
  const messages = rows.map(rowToMessage);
  const last = messages[messages.length - 1];
  return {
    messages,
    position: last ? { transactionId: last.transactionId, globalPosition: last.globalPosition } : after,
  };
}

/** Read matching messages from a store (upcast by its message definitions). */
export async function readStoreByQuery(
  store: MessageStore,
  query: Query,
  opts: ReadByQueryOptions = {},
): Promise<ReadByQueryResult> {
  const r = await readByQuery(store.pool, store.sqlContext, query, opts);
  upcast(store.messageDefinitions, r.messages);
  return r;
}

/** Every matching message after a position, page by page, and the position read up to. */
export async function readAllByQuery(
  store: MessageStore,
  query: Query,
  opts: { after?: LogPosition; pageSize?: number } = {},
): Promise<ReadByQueryResult> {
  const pageSize = opts.pageSize ?? 1000;
  const all: RecordedMessage[] = [];
  let position = opts.after ?? LOG_START;
  for (;;) {
    const page = await readStoreByQuery(store, query, { after: position, limit: pageSize });
    all.push(...page.messages);
    position = page.position;
    if (page.messages.length < pageSize) return { messages: all, position };
  }
}

/** What a decision was made on: the read's snapshot (pass as a condition's `after`). */
export interface DecisionSnapshot {
  /** `pg_snapshot` text of the read. */
  snapshot: string;
}

export interface ReadForDecisionResult extends DecisionSnapshot {
  /** Every matching message visible to the read (and not in `since`), in log order. */
  messages: RecordedMessage[];
}

/*
 * The decision read. Not gap-safe on purpose: it returns every matching message committed when
 * it ran (so an unrelated long transaction elsewhere does not hold decisions back), and its
 * snapshot, which tells the condition check exactly which messages the decision did not see.
 * The first page takes the snapshot in the same statement; later pages see the same set by
 * filtering on visibility in it.
 */
// Not seen by the `since` read: running then (xip) or started after it (>= xmax).
const SINCE = `AND ($1::pg_snapshot IS NULL OR transaction_id >= pg_snapshot_xmax($1::pg_snapshot)
         OR transaction_id = ANY(ARRAY(SELECT pg_snapshot_xip($1::pg_snapshot))))`;

const firstPageSql = (ctx: SqlContext, filter: string) =>
  `WITH s AS (SELECT pg_current_snapshot() AS snap)
   SELECT s.snap::text AS snapshot, m.* FROM s LEFT JOIN LATERAL (
     SELECT ${MESSAGE_COLUMNS} FROM ${ctx.s}.messages
      WHERE ${filter}
        ${SINCE}
      ORDER BY transaction_id, global_position LIMIT $2) m ON true`;

const nextPageSql = (ctx: SqlContext, filter: string) =>
  `SELECT ${MESSAGE_COLUMNS} FROM ${ctx.s}.messages
    WHERE (transaction_id, global_position) > ($3::xid8, $4::bigint)
      AND pg_visible_in_snapshot(transaction_id, $5::pg_snapshot)
      AND ${filter}
      ${SINCE}
    ORDER BY transaction_id, global_position LIMIT $2`;

/**
 * Read every message matching a query as a decider needs it: all committed matches, in log
 * order, with the read's snapshot. Pass the result as `after` of the append condition. With
 * `since` (an earlier read's snapshot, e.g. from a state snapshot), only the messages that read
 * did not see.
 */
export async function readForDecision(
  store: MessageStore,
  query: Query,
  opts: { since?: string; pageSize?: number } = {},
): Promise<ReadForDecisionResult> {
  assertQuery(query);
  assertReadForDecisionOptions(opts);
  const db = store.pool;
  const ctx = store.sqlContext;
  const pageSize = opts.pageSize ?? 1000;
  const since = opts.since ?? null;
  const f1 = queryFilter(ctx, query, 3);
  const first = await db.query<MessageRow & { snapshot: string }>(firstPageSql(ctx, f1.sql), [
    since,
    pageSize,
    ...f1.values,
  ]);
  const snapshot = first.rows[0]!.snapshot;
  const messages = first.rows.filter((r) => r.global_position !== null).map(rowToMessage);
  let page = messages.length;
  const fn = queryFilter(ctx, query, 6);
  while (page === pageSize) {
    const last = messages[messages.length - 1]!;
    const { rows } = await db.query<MessageRow>(nextPageSql(ctx, fn.sql), [
      since,
      pageSize,
      last.transactionId,
      last.globalPosition,
      snapshot,
      ...fn.values,
    ]);
    messages.push(...rows.map(rowToMessage));
    page = rows.length;
  }
  upcast(store.messageDefinitions, messages);
  return { messages, snapshot };
}
