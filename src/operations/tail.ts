import type pg from 'pg';
import type { MessageDefinition } from '../config/types.js';
import type { Queryable, SqlContext } from '../db/queryable.js';
import { isConnectionError } from '../db/sqlstate.js';
import { upcast } from '../store/messageTypes.js';
import { channelFor } from '../store/notifications.js';
import { logEnd, readCategory } from '../store/readLog.js';
import { readStream, streamVersion } from '../store/readStream.js';
import type { LogPosition, RecordedMessage } from '../store/types.js';

/** Where a tail starts: at the end (only new messages), or at a global position or a time. */
export type TailStart = 'end' | { position: number } | { time: Date };

export interface TailOptions {
  /** A stream (`order-1`) or a category (`order`). */
  target: { stream: string } | { category: string };
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
}

/* The first log transaction holding a message at or after a global position, or a time: reading
 * from (that transaction, 0) and dropping the earlier positions of the same range finds every
 * such message, whatever order their transactions committed in. */
const firstTxForPositionSql = (ctx: SqlContext) =>
  `SELECT transaction_id::text AS transaction_id FROM ${ctx.s}.messages
    WHERE global_position >= $1 ORDER BY transaction_id LIMIT 1`;
const firstTxForTimeSql = (ctx: SqlContext) =>
  `SELECT transaction_id::text AS transaction_id FROM ${ctx.s}.messages
    WHERE created_at >= $1 ORDER BY transaction_id LIMIT 1`;
const firstStreamPositionSql = (ctx: SqlContext) =>
  `SELECT coalesce(min(stream_position), 0) AS p FROM ${ctx.s}.messages
    WHERE stream_name = $1 AND (global_position >= $2 OR created_at >= $3)`;

async function categoryStart(db: Queryable, ctx: SqlContext, from: TailStart): Promise<LogPosition> {
  if (from === 'end') return logEnd(db, ctx);
  const { rows } =
    'position' in from
      ? await db.query<{ transaction_id: string }>(firstTxForPositionSql(ctx), [from.position])
      : await db.query<{ transaction_id: string }>(firstTxForTimeSql(ctx), [from.time]);
  const row = rows[0];
  // Nothing there yet: everything committed from now on qualifies, so start at the end.
  if (!row) return logEnd(db, ctx);
  return { transactionId: row.transaction_id, globalPosition: 0 };
}

/** Stream position after which to read (the stream's messages are committed in stream order). */
async function streamStart(db: Queryable, ctx: SqlContext, stream: string, from: TailStart): Promise<number> {
  if (from === 'end') return streamVersion(db, ctx, stream);
  const position = 'position' in from ? from.position : Number.MAX_SAFE_INTEGER;
  const time = 'time' in from ? from.time : new Date(8.64e15);
  const { rows } = await db.query<{ p: number }>(firstStreamPositionSql(ctx), [stream, position, time]);
  const first = rows[0]?.p ?? 0;
  return first > 0 ? first - 1 : streamVersion(db, ctx, stream);
}

function keep(m: RecordedMessage, from: TailStart, types: Set<string> | undefined): boolean {
  if (types && !types.has(m.type)) return false;
  if (from !== 'end' && 'position' in from && m.globalPosition < from.position) return false;
  if (from !== 'end' && 'time' in from && m.createdAt < from.time) return false;
  return true;
}

/**
 * Follow a stream or category: yields messages in log order as they are committed. Reads are
 * gap-safe (a message that commits late is never skipped); a LISTEN on the schema's channel cuts
 * the wait short and a poll is the backstop. Ends when `signal` aborts, or when caught up with
 * `follow: false`.
 */
export async function* tailMessages(
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
  let listener: pg.PoolClient | undefined;
  let listenerBroken = false;
  const listen = async () => {
    const client = await pool.connect();
    client.on('notification', onWake);
    // A dead listening connection must not crash the process: the loop listens again.
    client.on('error', () => {
      if (listener === client) listenerBroken = true;
    });
    await client.query(`LISTEN "${channelFor(ctx.schema).replace(/"/g, '""')}"`);
    listener = client;
  };
  const unlisten = async (broken: boolean) => {
    const client = listener;
    listener = undefined;
    listenerBroken = false;
    if (!client) return;
    client.off('notification', onWake);
    if (!broken) await client.query('UNLISTEN *').catch(() => undefined);
    client.release(broken ? true : undefined);
  };
  signal?.addEventListener('abort', onWake);

  /* One read from where the tail is; resolves to whether a full batch came back (read on at once). */
  let read: () => Promise<{ messages: RecordedMessage[]; full: boolean }>;
  if ('category' in opts.target) {
    const category = opts.target.category;
    let after: LogPosition | undefined;
    read = async () => {
      after ??= await categoryStart(pool, ctx, from);
      const r = await readCategory(pool, ctx, category, {
        after,
        limit: batchSize,
        ...(opts.types?.length ? { types: opts.types } : {}),
      });
      after = r.position;
      return { messages: r.messages, full: r.messages.length === batchSize };
    };
  } else {
    const stream = opts.target.stream;
    let last: number | undefined;
    read = async () => {
      last ??= await streamStart(pool, ctx, stream, from);
      const messages = await readStream(pool, ctx, stream, { from: last + 1, limit: batchSize });
      const lastRead = messages[messages.length - 1];
      if (lastRead) last = lastRead.streamPosition;
      return { messages, full: messages.length === batchSize };
    };
  }

  try {
    while (!signal?.aborted) {
      let batch: { messages: RecordedMessage[]; full: boolean };
      try {
        if (listenerBroken) await unlisten(true);
        if (follow && !listener) await listen();
        woken = false;
        batch = await read();
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
      if (batch.full) continue;
      if (!follow) return;
      await sleep(pollMs);
    }
  } finally {
    signal?.removeEventListener('abort', onWake);
    await unlisten(false);
  }
}
