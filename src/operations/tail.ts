import type pg from 'pg';
import type { MessageDefinition } from '../config/types.js';
import type { Query } from '../consistency/query.js';
import { readByQuery } from '../consistency/readByQuery.js';
import { listenClient } from '../db/pool.js';
import type { Queryable, SqlContext } from '../db/queryable.js';
import { isConnectionError } from '../db/sqlstate.js';
import { InvalidInputError } from '../errors.js';
import { upcast } from '../store/messageTypes.js';
import { channelFor } from '../store/notifications.js';
import { readCategory, readLog } from '../store/readLog.js';
import { readStream, streamVersion } from '../store/readStream.js';
import { LOG_START, type LogPosition, type RecordedMessage } from '../store/types.js';
import { assertTailOptions } from '../validation/options.js';

/**
 * Where a tail starts: at the end (only new messages), at a global position or a time, or just after
 * a message it delivered before (its log position: how a reader resumes without loss or duplicate).
 */
export type TailStart = 'end' | { position: number } | { time: Date } | { after: LogPosition };

/** What a tail follows: a stream, a category, the messages matching a query, or the whole log. */
export type TailTarget = { stream: string } | { category: string } | { query: Query } | { all: true };

export interface TailOptions {
  /** A stream (`order-1`), a category (`order`), a query (types and tags), or the whole log. */
  target: TailTarget;
  /** Default `'end'`: only messages committed after the tail started. */
  from?: TailStart;
  /** Only these message types. */
  types?: string[];
  /** Keep waiting for new messages (default true); false stops once caught up. */
  follow?: boolean;
  /** Stops a following tail. */
  signal?: AbortSignal;
  /** Backstop poll when no notification arrives (a writer may bypass the library). Default 1000. */
  pollMs?: number;
  /** Messages read per query. Default 500. */
  batchSize?: number;
  /** Wait before reconnecting after the server went away. Default 1000. */
  reconnectMs?: number;
  /** Message definitions whose upcasters apply to what is yielded. */
  definitions?: Record<string, MessageDefinition>;
  /**
   * Called once, when the tail's start is fixed (before it yields anything): from then on, every
   * message committed to the target is yielded. With `from: 'end'`, what committed before is not.
   */
  onStarted?: () => void;
  /**
   * Called when the tail reaches the head of what is readable, before it waits: once at first, then
   * again each time it had been behind (read a full batch). Never called with `follow: false`'s end.
   */
  onCaughtUp?: () => void;
  /**
   * A shared source of "new messages" wake-ups (subscribe, returning unsubscribe): the tail then
   * holds no LISTEN connection of its own (many tails, one listener). Default: its own LISTEN.
   */
  wakeups?: (onWake: () => void) => () => void;
}

/*
 * Where a tail from a global position or a time starts, in one snapshot: just before the oldest
 * transaction that holds, or may yet write, a message at or after that position (or time). That is
 * the first visible transaction holding one, or the oldest transaction still running (the
 * snapshot's xmin), whichever is older: a running transaction can commit such a message later and
 * it sorts by its own, older, transaction id. Reading from (that transaction, 0) and dropping the
 * earlier positions of the same range finds every such message, whatever order they commit in.
 */
const startTxSql = (ctx: SqlContext, column: 'global_position' | 'created_at') =>
  `SELECT least(
     (SELECT transaction_id FROM ${ctx.s}.messages WHERE ${column} >= $1 ORDER BY transaction_id LIMIT 1),
     pg_snapshot_xmin(pg_current_snapshot()))::text AS start_tx`;
const firstStreamPositionSql = (ctx: SqlContext) =>
  `SELECT coalesce(min(stream_position), 0) AS p FROM ${ctx.s}.messages
    WHERE stream_name = $1 AND (global_position >= $2 OR created_at >= $3)`;

/*
 * The end of the log as one snapshot sees it: the last final position, and the ids of the messages
 * this snapshot already sees beyond it (committed by transactions younger than the oldest one still
 * running). A cursor alone cannot say "everything visible now": those messages sort after it and
 * would be printed as new once the old transaction ends.
 */
// The upper bound (no visible message is at or after xmax) makes `>= xmin` a range: read through
// the log index whatever the statistics, where a lone `>= xmin` can be planned as a table scan.
const endSql = (ctx: SqlContext) =>
  `WITH x AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin,
                     pg_snapshot_xmax(pg_current_snapshot()) AS xmax)
   SELECT e.transaction_id, e.global_position, NULL AS id
     FROM (SELECT transaction_id, global_position FROM ${ctx.s}.messages, x
            WHERE transaction_id < x.xmin
            ORDER BY transaction_id DESC, global_position DESC LIMIT 1) e
   UNION ALL
   SELECT NULL, NULL, m.id::text FROM ${ctx.s}.messages m, x
    WHERE m.transaction_id >= x.xmin AND m.transaction_id < x.xmax`;

async function logEndNow(db: Queryable, ctx: SqlContext): Promise<{ end: LogPosition; seen: Set<string> }> {
  const { rows } = await db.query<{
    transaction_id: string | null;
    global_position: number | null;
    id: string | null;
  }>(endSql(ctx));
  const last = rows.find((r) => r.id === null);
  const end = last
    ? { transactionId: last.transaction_id!, globalPosition: Number(last.global_position) }
    : LOG_START;
  return { end, seen: new Set(rows.flatMap((r) => (r.id === null ? [] : [r.id]))) };
}

async function logStart(
  db: Queryable,
  ctx: SqlContext,
  from: TailStart,
): Promise<{ end: LogPosition; seen: Set<string> }> {
  if (from === 'end') return logEndNow(db, ctx);
  // Resuming: everything after the last delivered message's log position, gap-safe.
  if ('after' in from) return { end: from.after, seen: new Set() };
  const { rows } =
    'position' in from
      ? await db.query<{ start_tx: string }>(startTxSql(ctx, 'global_position'), [from.position])
      : await db.query<{ start_tx: string }>(startTxSql(ctx, 'created_at'), [from.time]);
  return { end: { transactionId: rows[0]!.start_tx, globalPosition: 0 }, seen: new Set() };
}

/** Stream position after which to read (the stream's messages are committed in stream order). */
const streamPositionAtSql = (ctx: SqlContext) =>
  `SELECT stream_position FROM ${ctx.s}.messages WHERE stream_name = $1 AND global_position = $2`;

async function streamStart(db: Queryable, ctx: SqlContext, stream: string, from: TailStart): Promise<number> {
  if (from === 'end') return streamVersion(db, ctx, stream);
  if ('after' in from) {
    // A stream is followed in stream order: resume after the stream position of the last message
    // delivered (named by its log position).
    const { rows } = await db.query<{ stream_position: number }>(streamPositionAtSql(ctx), [
      stream,
      from.after.globalPosition,
    ]);
    const row = rows[0];
    if (!row)
      throw new InvalidInputError(
        `No message of stream "${stream}" at global position ${from.after.globalPosition}: cannot resume after it.`,
        'Resume with the id of an event this stream delivered, or start over.',
      );
    return row.stream_position;
  }
  const position = 'position' in from ? from.position : Number.MAX_SAFE_INTEGER;
  const time = 'time' in from ? from.time : new Date(8.64e15);
  const { rows } = await db.query<{ p: number }>(firstStreamPositionSql(ctx), [stream, position, time]);
  const first = rows[0]?.p ?? 0;
  return first > 0 ? first - 1 : streamVersion(db, ctx, stream);
}

function keep(m: RecordedMessage, from: TailStart, types: Set<string> | undefined): boolean {
  if (types && !types.has(m.type)) return false;
  if (from !== 'end' && 'position' in from && m.globalPosition < from.position) return false;
  if (from !== 'end' && 'after' in from) return true;
  if (from !== 'end' && 'time' in from && m.createdAt < from.time) return false;
  return true;
}

/**
 * Follow a stream, a category, a query or the whole log: yields messages in log order as they are committed. Reads are
 * gap-safe (a message that commits late is never skipped); a LISTEN on the schema's channel cuts
 * the wait short and a poll is the backstop. Ends when `signal` aborts, or when caught up with
 * `follow: false`.
 */
export function tailMessages(
  pool: pg.Pool,
  ctx: SqlContext,
  opts: TailOptions,
): AsyncGenerator<RecordedMessage, void, undefined> {
  // Checked at the call, not at the first next(): a bad option fails where it is written.
  assertTailOptions(opts);
  return tail(pool, ctx, opts);
}

async function* tail(
  pool: pg.Pool,
  ctx: SqlContext,
  opts: TailOptions,
): AsyncGenerator<RecordedMessage, void, undefined> {
  const from = opts.from ?? 'end';
  const follow = opts.follow ?? true;
  const pollMs = opts.pollMs ?? 1000;
  const batchSize = opts.batchSize ?? 500;
  const types = opts.types?.length ? new Set(opts.types) : undefined;
  const signal = opts.signal;
  const defs = opts.definitions ?? {};
  const reconnectMs = opts.reconnectMs ?? 1000;

  let wake: (() => void) | undefined;
  let woken = false;
  const onWake = () => {
    woken = true;
    wake?.();
  };
  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      if (woken || signal?.aborted) return resolve();
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        wake = undefined;
        resolve();
      }
      wake = done;
    });
  let listener: pg.Client | undefined;
  let listenerBroken = false;
  let unsubscribe: (() => void) | undefined;
  const listen = async () => {
    if (opts.wakeups) {
      unsubscribe ??= opts.wakeups(onWake);
      return;
    }
    // A connection of its own (on the pool's listen URL when it goes through PgBouncer).
    const client = listenClient(pool, 'beckett-tail');
    client.on('error', () => undefined);
    await client.connect();
    client.on('notification', onWake);
    // A dead listening connection must not crash the process: the loop listens again.
    client.on('error', () => {
      if (listener === client) listenerBroken = true;
    });
    await client.query(`LISTEN "${channelFor(ctx.schema).replace(/"/g, '""')}"`);
    listener = client;
  };
  const unlisten = async (broken: boolean) => {
    unsubscribe?.();
    unsubscribe = undefined;
    const client = listener;
    listener = undefined;
    listenerBroken = false;
    if (!client) return;
    client.off('notification', onWake);
    if (!broken) await client.query('UNLISTEN *').catch(() => undefined);
    await client.end().catch(() => undefined);
  };
  signal?.addEventListener('abort', onWake);

  /* One read from where the tail is; resolves to whether a full batch came back (read on at once). */
  let read: () => Promise<{ messages: RecordedMessage[]; full: boolean }>;
  if (!('stream' in opts.target)) {
    const target = opts.target;
    const typeFilter = opts.types?.length ? { types: opts.types } : {};
    /* The one gap-safe read of the log, of a category, or by query, after a log position. */
    const readAfter = (after: LogPosition) =>
      'category' in target
        ? readCategory(pool, ctx, target.category, { after, limit: batchSize, ...typeFilter })
        : 'query' in target
          ? readByQuery(pool, ctx, target.query, { after, limit: batchSize })
          : readLog(pool, ctx, { after, limit: batchSize, ...typeFilter });
    let after: LogPosition | undefined;
    let seen = new Set<string>();
    read = async () => {
      if (!after) {
        ({ end: after, seen } = await logStart(pool, ctx, from));
        opts.onStarted?.();
      }
      const r = await readAfter(after);
      after = r.position;
      // Messages already visible when the tail started are not new, however late they turn final.
      const messages = seen.size ? r.messages.filter((m) => !seen.delete(m.id)) : r.messages;
      return { messages, full: r.messages.length === batchSize };
    };
  } else {
    const stream = opts.target.stream;
    let last: number | undefined;
    read = async () => {
      if (last === undefined) {
        last = await streamStart(pool, ctx, stream, from);
        opts.onStarted?.();
      }
      const messages = await readStream(pool, ctx, stream, { from: last + 1, limit: batchSize });
      const lastRead = messages[messages.length - 1];
      if (lastRead) last = lastRead.streamPosition;
      return { messages, full: messages.length === batchSize };
    };
  }

  let behind = true;
  // Set after a read that ran while the LISTEN connected: read once more before sleeping, since a
  // commit between that read's snapshot and the LISTEN would wake nobody.
  let recheck = false;
  try {
    while (!signal?.aborted) {
      let batch: { messages: RecordedMessage[]; full: boolean };
      try {
        if (listenerBroken) await unlisten(true);
        woken = false;
        if (follow && !listener && !unsubscribe) {
          // Connect the LISTEN while the batch is read: the first line comes one connection sooner.
          [, batch] = await Promise.all([listen(), read()]);
          recheck = true;
        } else batch = await read();
      } catch (err) {
        // The server went away (restart, failover): keep the place and try again, as tail -F does.
        if (!follow || !isConnectionError(err)) throw err;
        await unlisten(true);
        await sleep(reconnectMs);
        continue;
      }
      for (const m of upcast(
        defs,
        batch.messages.filter((m) => keep(m, from, types)),
      ))
        yield m;
      if (batch.full) {
        behind = true;
        continue;
      }
      if (!follow) return;
      if (recheck) {
        recheck = false;
        continue;
      }
      if (behind) opts.onCaughtUp?.();
      behind = false;
      await sleep(pollMs);
    }
  } finally {
    signal?.removeEventListener('abort', onWake);
    await unlisten(false);
  }
}

/** What a tail target names, and what exists by a similar name when it names nothing yet. */
export interface TailTargetInfo {
  /** A message is stored in that stream or category. */
  exists: boolean;
  /** When nothing exists: the closest existing category or stream name, if one is close. */
  closest: { category: string } | { stream: string } | undefined;
}

const categoryExistsSql = (ctx: SqlContext) =>
  `SELECT EXISTS (SELECT 1 FROM ${ctx.s}.messages WHERE split_part(stream_name, '-', 1) = $1) AS e`;
const streamExistsSql = (ctx: SqlContext) =>
  `SELECT EXISTS (SELECT 1 FROM ${ctx.s}.messages WHERE stream_name = $1) AS e`;
/* Distinct categories by a skip scan over messages_category_idx: one index probe per category,
 * not a scan of the log. */
const categoriesSql = (ctx: SqlContext) =>
  `WITH RECURSIVE c(name) AS (
     (SELECT split_part(stream_name, '-', 1) FROM ${ctx.s}.messages ORDER BY 1 LIMIT 1)
     UNION ALL
     SELECT (SELECT split_part(m.stream_name, '-', 1) FROM ${ctx.s}.messages m
              WHERE split_part(m.stream_name, '-', 1) > c.name ORDER BY 1 LIMIT 1)
       FROM c WHERE c.name IS NOT NULL)
   SELECT name FROM c WHERE name IS NOT NULL LIMIT $1`;
/* Distinct streams of one category, by a skip scan over the (stream_name, stream_position) key. */
const categoryStreamsSql = (ctx: SqlContext) =>
  `WITH RECURSIVE s(name) AS (
     (SELECT stream_name FROM ${ctx.s}.messages WHERE stream_name > $1 || '-' ORDER BY 1 LIMIT 1)
     UNION ALL
     SELECT (SELECT m.stream_name FROM ${ctx.s}.messages m WHERE m.stream_name > s.name ORDER BY 1 LIMIT 1)
       FROM s WHERE s.name IS NOT NULL AND split_part(s.name, '-', 1) = $1)
   SELECT name FROM s WHERE name IS NOT NULL AND split_part(name, '-', 1) = $1 LIMIT $2`;

const SUGGESTION_CANDIDATES = 1000;

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++)
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = row;
  }
  return prev[b.length]!;
}

/** The candidate closest to `name`, if close enough to be what was meant (a typo, a plural). */
export function closestName(name: string, candidates: string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(name.length / 3)) + 1;
  for (const c of candidates) {
    const d = editDistance(name.toLowerCase(), c.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [c, d];
  }
  return best;
}

/**
 * Whether a tail target names anything stored yet and, when not, the closest existing category
 * (for a category, or a stream of an unknown category) or stream of the same category.
 */
export async function describeTailTarget(
  db: Queryable,
  ctx: SqlContext,
  target: { stream: string } | { category: string },
): Promise<TailTargetInfo> {
  const exists = async (sql: string, name: string) =>
    (await db.query<{ e: boolean }>(sql, [name])).rows[0]?.e === true;
  const categories = async () =>
    (await db.query<{ name: string }>(categoriesSql(ctx), [SUGGESTION_CANDIDATES])).rows.map((r) => r.name);
  if ('category' in target) {
    if (await exists(categoryExistsSql(ctx), target.category)) return { exists: true, closest: undefined };
    const category = closestName(target.category, await categories());
    return { exists: false, closest: category === undefined ? undefined : { category } };
  }
  if (await exists(streamExistsSql(ctx), target.stream)) return { exists: true, closest: undefined };
  const ofCategory = target.stream.split('-')[0]!;
  if (await exists(categoryExistsSql(ctx), ofCategory)) {
    const { rows } = await db.query<{ name: string }>(categoryStreamsSql(ctx), [
      ofCategory,
      SUGGESTION_CANDIDATES,
    ]);
    const stream = closestName(
      target.stream,
      rows.map((r) => r.name),
    );
    return { exists: false, closest: stream === undefined ? undefined : { stream } };
  }
  const category = closestName(ofCategory, await categories());
  return { exists: false, closest: category === undefined ? undefined : { category } };
}
