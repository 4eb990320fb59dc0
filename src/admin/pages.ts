import type pg from 'pg';
import { type SqlState, sqlStateOf } from '../db/sqlstate.js';
import { toBeckettError } from '../db/toBeckettError.js';
import { InvalidInputError, QueryTimeoutError } from '../errors.js';
import type { LogPosition, RecordedMessage } from '../store/types.js';

/** A page of a keyset-paginated list: `next` is the cursor of the following page, or null at the end. */
export interface Page<T> {
  items: T[];
  next: string | null;
}

/** Page sizes: 50 by default, 500 at most (a page is one indexed range scan). */
export const DEFAULT_LIMIT = 50;
export const MAX_LIMIT = 500;

export function pageLimit(limit: unknown): number {
  if (limit === undefined || limit === null) return DEFAULT_LIMIT;
  if (typeof limit !== 'number' || !Number.isSafeInteger(limit) || limit < 1 || limit > MAX_LIMIT)
    throw new InvalidInputError(
      `limit must be an integer from 1 to ${MAX_LIMIT}, got ${JSON.stringify(limit)}.`,
      'Page on with the `next` cursor of the previous page.',
    );
  return limit;
}

/** An opaque cursor: the keyset values of the last item, as base64url JSON. */
export function encodeCursor(values: unknown[]): string {
  return Buffer.from(JSON.stringify(values)).toString('base64url');
}

export function decodeCursor(cursor: unknown, arity: number): unknown[] | undefined {
  if (cursor === undefined || cursor === null || cursor === '') return undefined;
  let values: unknown;
  try {
    values = typeof cursor === 'string' ? JSON.parse(Buffer.from(cursor, 'base64url').toString()) : undefined;
  } catch {
    values = undefined;
  }
  if (!Array.isArray(values) || values.length !== arity)
    throw new InvalidInputError(
      `Invalid cursor ${JSON.stringify(cursor)}.`,
      'Pass back the `next` value of the previous page unchanged.',
    );
  return values;
}

/**
 * A log position as text, `<transactionId>:<globalPosition>`: the REST `after` cursor of the log
 * and the SSE event id (Last-Event-ID).
 */
export function formatLogPosition(p: LogPosition): string {
  return `${p.transactionId}:${p.globalPosition}`;
}

const LOG_POSITION = /^(\d{1,20}):(\d{1,19})$/;

export function parseLogPosition(text: string, what = 'log position'): LogPosition {
  const m = LOG_POSITION.exec(text);
  if (!m || !Number.isSafeInteger(Number(m[2])))
    throw new InvalidInputError(
      `Invalid ${what} ${JSON.stringify(text)}: expected <transactionId>:<globalPosition>, as an event id or logPosition shows it.`,
    );
  return { transactionId: m[1]!, globalPosition: Number(m[2]) };
}

/** A message as the admin API and REST show it. */
export interface MessageView {
  id: string;
  stream: string;
  type: string;
  /** Its position in the stream (1-based). */
  position: number;
  globalPosition: number;
  /** Its place in the gap-safe log (`<transactionId>:<globalPosition>`). */
  logPosition: string;
  time: string;
  data: unknown;
  metadata: Record<string, unknown>;
  tags: string[];
}

export function messageView(m: RecordedMessage): MessageView {
  return {
    id: m.id,
    stream: m.streamName,
    type: m.type,
    position: m.streamPosition,
    globalPosition: m.globalPosition,
    logPosition: formatLogPosition(m),
    time: m.createdAt.toISOString(),
    data: m.data,
    metadata: m.metadata,
    tags: m.tags,
  };
}

const QUERY_CANCELED: (typeof SqlState)['queryCanceled'] = '57014';

/**
 * Run admin reads in a read-only transaction with a statement timeout, so one costly page cannot
 * hold a connection (or the database) for long. The transaction takes no transaction id: it holds
 * no gap-safe reader back.
 */
export async function withReadTimeout<T>(
  pool: pg.Pool,
  { timeoutMs, schema }: { timeoutMs: number; schema: string },
  fn: (client: pg.PoolClient) => Promise<T>,
): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  const onError = (err: Error) => {
    broken = err;
  };
  client.on('error', onError);
  try {
    // No JIT: admin reads are bounded index walks whose cost estimates (lateral subqueries with
    // LIMITs) still pass jit_above_cost, and compiling took 1.1 s of the 2 s lag view on 1M messages.
    await client.query(
      `BEGIN READ ONLY; SET LOCAL statement_timeout = ${Math.max(1, Math.floor(timeoutMs))}; SET LOCAL jit = off`,
    );
    try {
      const result = await fn(client);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    }
  } catch (err) {
    if (!(err instanceof Error && 'severity' in err)) broken ??= err as Error;
    if (sqlStateOf(err) === QUERY_CANCELED) throw new QueryTimeoutError(timeoutMs, err);
    throw toBeckettError(err, { schema });
  } finally {
    client.off('error', onError);
    client.release(broken);
  }
}
