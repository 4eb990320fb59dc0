import type { Queryable, SqlContext } from '../db/queryable.js';
import { InvalidInputError, NotFoundError } from '../errors.js';
import { readCategory, readLog } from '../store/readLog.js';
import { readStream } from '../store/readStream.js';
import { MESSAGE_COLUMNS, type MessageRow, rowToMessage } from '../store/rowToMessage.js';
import { assertCategory, assertStreamName } from '../validation/names.js';
import {
  decodeCursor,
  encodeCursor,
  formatLogPosition,
  type MessageView,
  messageView,
  type Page,
  pageLimit,
  parseLogPosition,
} from './pages.js';

/*
 * The message store as an operator browses it. Every query is one index range or a skip scan over
 * an index (one probe per distinct value), so a page costs the same with 10 or 10 million messages.
 */

/*
 * Message counts are estimates: counting through the expression index cannot be index-only, and a
 * capped count of 1000 per category made a page of 50 categories take 2 s on 1M messages.
 */
export interface CategoryInfo {
  category: string;
  /**
   * About how many messages it has: an estimate from the planner's statistics of
   * messages_category_idx (refreshed by ANALYZE / autovacuum), null before the first ANALYZE.
   * Exact for the most common categories as of that ANALYZE; the others share the rest evenly.
   */
  estimatedMessages: number | null;
  /** The global position and time of its last message in log order. */
  lastGlobalPosition: number;
  lastTime: string;
}

/* Distinct categories from a start, by a skip scan over messages_category_idx; `search` is a prefix:
 * the scan starts at it and stops past it. */
const categoriesSql = (ctx: SqlContext) => `
  WITH RECURSIVE c(name) AS (
    (SELECT split_part(stream_name, '-', 1) FROM ${ctx.s}.messages
      WHERE split_part(stream_name, '-', 1) >= $1 AND split_part(stream_name, '-', 1) > $2
      ORDER BY 1 LIMIT 1)
    UNION ALL
    SELECT (SELECT split_part(m.stream_name, '-', 1) FROM ${ctx.s}.messages m
             WHERE split_part(m.stream_name, '-', 1) > c.name ORDER BY 1 LIMIT 1)
      FROM c WHERE c.name IS NOT NULL AND starts_with(c.name, $1))
  SELECT c.name, l.global_position, l.created_at
    FROM (SELECT name FROM c WHERE name IS NOT NULL AND starts_with(name, $1) LIMIT $3) c
    CROSS JOIN LATERAL (
      SELECT m.global_position, m.created_at FROM ${ctx.s}.messages m
       WHERE split_part(m.stream_name, '-', 1) = c.name
       ORDER BY m.transaction_id DESC, m.global_position DESC LIMIT 1) l
   ORDER BY c.name`;

/* The statistics ANALYZE keeps on the category expression index, and the table's row estimate. */
const categoryStatsSql = `
  SELECT c.reltuples::float8 AS rows, s.n_distinct::float8 AS n_distinct,
         s.most_common_vals::text::text[] AS vals, s.most_common_freqs::float8[] AS freqs
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_stats s ON s.schemaname = n.nspname AND s.tablename = 'messages_category_idx'
   WHERE n.nspname = $1 AND c.relname = 'messages'
   LIMIT 1`;

/** Estimated message count per category, from one read of the planner's statistics. */
async function categoryEstimator(
  db: Queryable,
  ctx: SqlContext,
): Promise<(category: string) => number | null> {
  const { rows } = await db.query<{
    rows: number;
    n_distinct: number | null;
    vals: string[] | null;
    freqs: number[] | null;
  }>(categoryStatsSql, [ctx.schema]);
  const r = rows[0];
  // reltuples is -1 before the first VACUUM or ANALYZE; no statistics then.
  if (!r || r.rows < 0 || r.n_distinct === null) return () => null;
  const vals = r.vals ?? [];
  const freqs = r.freqs ?? [];
  const common = new Map(vals.map((v, i) => [v, freqs[i] ?? 0]));
  const distinct = r.n_distinct < 0 ? -r.n_distinct * r.rows : r.n_distinct;
  const restShare = Math.max(0, 1 - freqs.reduce((a, b) => a + b, 0));
  const others = Math.max(1, distinct - vals.length);
  return (category) => {
    const f = common.get(category);
    return Math.round((f !== undefined ? f : restShare / others) * r.rows);
  };
}

/** Categories in name order; `search` keeps the ones starting with it. */
export async function listCategories(
  db: Queryable,
  ctx: SqlContext,
  opts: { search?: string; after?: string; limit?: number } = {},
): Promise<Page<CategoryInfo>> {
  const limit = pageLimit(opts.limit);
  const after = decodeCursor(opts.after, 1)?.[0];
  const { rows } = await db.query<{
    name: string;
    global_position: number;
    created_at: Date;
  }>(categoriesSql(ctx), [opts.search ?? '', typeof after === 'string' ? after : '', limit + 1]);
  const estimate = rows.length > 0 ? await categoryEstimator(db, ctx) : () => null;
  const items = rows.slice(0, limit).map((r) => ({
    category: r.name,
    estimatedMessages: estimate(r.name),
    lastGlobalPosition: r.global_position,
    lastTime: r.created_at.toISOString(),
  }));
  const last = items[items.length - 1];
  return { items, next: rows.length > limit && last ? encodeCursor([last.category]) : null };
}

export interface StreamInfo {
  stream: string;
  /** Its last position. */
  version: number;
  lastTime: string;
}

/* Distinct streams by a skip scan over messages_stream_position_key within the category's range of
 * names ([category, category || '.'): '.' follows '-'), keeping those of the category. */
const streamsSql = (ctx: SqlContext) => `
  WITH RECURSIVE s(name) AS (
    (SELECT stream_name FROM ${ctx.s}.messages
      WHERE stream_name >= $1 AND stream_name > $2 AND stream_name < $1 || '.'
      ORDER BY stream_name LIMIT 1)
    UNION ALL
    SELECT (SELECT m.stream_name FROM ${ctx.s}.messages m
             WHERE m.stream_name > s.name AND m.stream_name < $1 || '.' ORDER BY m.stream_name LIMIT 1)
      FROM s WHERE s.name IS NOT NULL)
  SELECT s.name, l.stream_position, l.created_at
    FROM (SELECT name FROM s WHERE name IS NOT NULL AND split_part(name, '-', 1) = $1 LIMIT $3) s
    CROSS JOIN LATERAL (
      SELECT m.stream_position, m.created_at FROM ${ctx.s}.messages m
       WHERE m.stream_name = s.name ORDER BY m.stream_position DESC LIMIT 1) l
   ORDER BY s.name`;

/** The streams of a category, in name order. */
export async function listStreams(
  db: Queryable,
  ctx: SqlContext,
  category: string,
  opts: { after?: string; limit?: number } = {},
): Promise<Page<StreamInfo>> {
  assertCategory(category);
  const limit = pageLimit(opts.limit);
  const after = decodeCursor(opts.after, 1)?.[0];
  const { rows } = await db.query<{ name: string; stream_position: number; created_at: Date }>(
    streamsSql(ctx),
    [category, typeof after === 'string' ? after : '', limit + 1],
  );
  const items = rows.slice(0, limit).map((r) => ({
    stream: r.name,
    version: r.stream_position,
    lastTime: r.created_at.toISOString(),
  }));
  const last = items[items.length - 1];
  return { items, next: rows.length > limit && last ? encodeCursor([last.stream]) : null };
}

/** A page of a stream's messages from a position (forward), or down from one (backward). */
export async function streamMessages(
  db: Queryable,
  ctx: SqlContext,
  stream: string,
  opts: { from?: number; limit?: number; direction?: 'forward' | 'backward' } = {},
): Promise<Page<MessageView>> {
  assertStreamName(stream);
  const limit = pageLimit(opts.limit);
  const backward = opts.direction === 'backward';
  const rows = await readStream(db, ctx, stream, {
    direction: backward ? 'backward' : 'forward',
    ...(opts.from !== undefined ? { from: opts.from } : {}),
    limit: limit + 1,
  });
  const extra = rows[limit];
  return { items: rows.slice(0, limit).map(messageView), next: extra ? String(extra.streamPosition) : null };
}

export interface MessageDetail {
  message: MessageView;
  /** Ids of the previous and next messages of its stream. */
  previous: string | null;
  next: string | null;
  /** Messages with its correlation id (the first 100, in global order). */
  correlated: MessageView[];
  /** Messages it caused (their causation id is its id; the first 100). */
  caused: MessageView[];
}

export const LINKS_LIMIT = 100;

const byIdSql = (ctx: SqlContext) => `SELECT ${MESSAGE_COLUMNS} FROM ${ctx.s}.messages WHERE id = $1`;
const neighboursSql = (ctx: SqlContext) => `
  SELECT (SELECT id FROM ${ctx.s}.messages WHERE stream_name = $1 AND stream_position < $2
           ORDER BY stream_position DESC LIMIT 1) AS previous,
         (SELECT id FROM ${ctx.s}.messages WHERE stream_name = $1 AND stream_position > $2
           ORDER BY stream_position LIMIT 1) AS next`;
const correlatedSql = (ctx: SqlContext) => `
  SELECT ${MESSAGE_COLUMNS} FROM ${ctx.s}.messages WHERE metadata ->> 'correlationId' = $1
   ORDER BY global_position LIMIT $2`;
const causedSql = (ctx: SqlContext) => `
  SELECT ${MESSAGE_COLUMNS} FROM ${ctx.s}.messages
   WHERE metadata ? 'causationId' AND metadata ->> 'causationId' = $1
   ORDER BY global_position LIMIT $2`;
const byGlobalPositionSql = (ctx: SqlContext) =>
  `SELECT ${MESSAGE_COLUMNS} FROM ${ctx.s}.messages WHERE global_position = $1`;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** One message with its neighbours in the stream and the messages linked to it. */
export async function messageById(db: Queryable, ctx: SqlContext, id: string): Promise<MessageDetail> {
  const notFound = () =>
    new NotFoundError(
      `No message with id ${JSON.stringify(id)}.`,
      'Message ids are UUIDs, as es read shows them.',
    );
  if (!UUID.test(id)) throw notFound();
  const { rows } = await db.query<MessageRow>(byIdSql(ctx), [id]);
  const row = rows[0];
  if (!row) throw notFound();
  const m = rowToMessage(row);
  const n = await db.query<{ previous: string | null; next: string | null }>(neighboursSql(ctx), [
    m.streamName,
    m.streamPosition,
  ]);
  const correlationId = typeof m.metadata.correlationId === 'string' ? m.metadata.correlationId : m.id;
  const correlated = await db.query<MessageRow>(correlatedSql(ctx), [correlationId, LINKS_LIMIT]);
  const caused = await db.query<MessageRow>(causedSql(ctx), [m.id, LINKS_LIMIT]);
  return {
    message: messageView(m),
    previous: n.rows[0]?.previous ?? null,
    next: n.rows[0]?.next ?? null,
    correlated: correlated.rows.map((r) => messageView(rowToMessage(r))),
    caused: caused.rows.map((r) => messageView(rowToMessage(r))),
  };
}

/** Find messages by correlation id, causation id or global position (exactly one of them). */
export async function findMessages(
  db: Queryable,
  ctx: SqlContext,
  by: { correlationId?: string; causationId?: string; globalPosition?: number },
): Promise<{ items: MessageView[] }> {
  const given = Object.entries(by).filter(([, v]) => v !== undefined);
  if (given.length !== 1)
    throw new InvalidInputError(
      'Find messages by exactly one of correlationId, causationId or globalPosition.',
    );
  let rows: MessageRow[];
  if (by.correlationId !== undefined)
    rows = (await db.query<MessageRow>(correlatedSql(ctx), [by.correlationId, LINKS_LIMIT])).rows;
  else if (by.causationId !== undefined)
    rows = (await db.query<MessageRow>(causedSql(ctx), [by.causationId, LINKS_LIMIT])).rows;
  else {
    const p = by.globalPosition;
    if (typeof p !== 'number' || !Number.isSafeInteger(p) || p < 1)
      throw new InvalidInputError(`globalPosition must be a positive integer, got ${JSON.stringify(p)}.`);
    rows = (await db.query<MessageRow>(byGlobalPositionSql(ctx), [p])).rows;
  }
  return { items: rows.map((r) => messageView(rowToMessage(r))) };
}

/** A page of the gap-safe log (whole, or one category), after a log position. */
export async function logPage(
  db: Queryable,
  ctx: SqlContext,
  opts: { after?: string; limit?: number; category?: string; types?: string[] } = {},
): Promise<Page<MessageView> & { position: string }> {
  const limit = pageLimit(opts.limit);
  const after = opts.after ? parseLogPosition(opts.after, 'after') : undefined;
  const read = { ...(after ? { after } : {}), limit, ...(opts.types?.length ? { types: opts.types } : {}) };
  if (opts.category !== undefined) assertCategory(opts.category);
  const r =
    opts.category !== undefined
      ? await readCategory(db, ctx, opts.category, read)
      : await readLog(db, ctx, read);
  const position = formatLogPosition(r.position);
  return {
    items: r.messages.map(messageView),
    next: r.messages.length === limit ? position : null,
    position,
  };
}
