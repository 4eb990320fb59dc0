import type { Queryable, SqlContext } from '../db/queryable.js';
import { statement } from '../db/queryable.js';
import { isConnectFailure, isConnectionError, SqlState, sqlStateOf } from '../db/sqlstate.js';
import {
  AppendConditionFailedError,
  AppendOutcomeUnknownError,
  BeckettError,
  MessageIdConflictError,
  WrongExpectedVersionError,
} from '../errors.js';
import type { AppendResult, ExpectedVersion } from './types.js';

/*
 * Appends are idempotent by message id. A reply can be lost after COMMIT: the writer then reports
 * AppendOutcomeUnknownError (never a conflict, never a rerun), and the caller retries with the
 * same ids. The retry fails the way a conflict does (the stream moved on, by its own messages; a
 * condition matches its own messages; an id is taken), and only then, on the failure path, are the
 * ids looked up: stored exactly as the append writes them, they give the original result; stored
 * otherwise, a MessageIdConflictError. An append that succeeds costs nothing more, nor does one
 * that fails with ids the store drew itself (it cannot be a retry).
 */

/** One stream's part of an append, as sent. */
export interface SentAppend {
  stream: string;
  expected: ExpectedVersion;
  ids: readonly string[];
  /** Whether the caller gave any of the ids (only then can the append be a retry). */
  givenIds: boolean;
}

export interface StoredResult extends AppendResult {
  /** The writing transaction of the stream's last message. */
  transactionId: string;
}

interface Row {
  id: string;
  stream_name: string;
  stream_position: number;
  global_position: number;
  transaction_id: string;
}

const sql = (ctx: SqlContext) =>
  `SELECT id::text, stream_name, stream_position, global_position, transaction_id::text
     FROM ${ctx.s}.messages WHERE id = ANY($1::uuid[])`;

/** The unique index that makes a message id appear once in the store. */
export const MESSAGE_ID_CONSTRAINT = 'messages_id_key';

export function isDuplicateMessageId(err: unknown): boolean {
  return (
    sqlStateOf(err) === SqlState.uniqueViolation &&
    (err as { constraint?: string }).constraint === MESSAGE_ID_CONSTRAINT
  );
}

function firstPositionFits(expected: ExpectedVersion, first: number): boolean {
  if (expected === 'any') return true;
  if (expected === 'stream_exists') return first > 1;
  if (expected === 'no_stream') return first === 1;
  return first === expected + 1;
}

/**
 * The original result per stream when every id of `appends` is stored in its stream, in order, at
 * the positions the append writes; undefined when none is stored. Throws MessageIdConflictError
 * when some are stored otherwise.
 */
export async function storedAppends(
  db: Queryable,
  ctx: SqlContext,
  appends: readonly SentAppend[],
): Promise<Map<string, StoredResult> | undefined> {
  const ids = appends.flatMap((a) => a.ids);
  const { rows } = await db.query<Row>(statement(ctx, 'stored_ids', sql(ctx), [ids]));
  if (rows.length === 0) return undefined;
  const byId = new Map(rows.map((r) => [r.id, r]));
  const results = new Map<string, StoredResult>();
  for (const a of appends) {
    const first = byId.get(a.ids[0]!);
    let last: Row | undefined;
    for (const [i, id] of a.ids.entries()) {
      const r = byId.get(id);
      if (
        !r ||
        !first ||
        r.stream_name !== a.stream ||
        r.stream_position !== first.stream_position + i ||
        !firstPositionFits(a.expected, first.stream_position)
      )
        throw new MessageIdConflictError(
          rows.map((x) => x.id),
          r
            ? `in stream "${r.stream_name}" at position ${r.stream_position}, not as this append to "${a.stream}" would write it`
            : `but ${id}, of the same append, is not: not a retry of one append`,
        );
      last = r;
    }
    results.set(a.stream, {
      streamVersion: last!.stream_position,
      globalPosition: last!.global_position,
      transactionId: last!.transaction_id,
    });
  }
  return results;
}

/** True when a failed write's outcome is unknown: its connection went away after it was sent. */
export function isOutcomeUnknown(err: unknown): boolean {
  return !(err instanceof BeckettError) && isConnectionError(err) && !isConnectFailure(err);
}

/**
 * Settle a failed write made on the store's pool (outside a caller's transaction): the original
 * results if it was a retry of a committed append; otherwise throws AppendOutcomeUnknownError for a
 * lost connection, MessageIdConflictError for ids stored elsewhere, or `err` itself.
 */
export async function settleFailedWrite(
  db: Queryable,
  ctx: SqlContext,
  appends: readonly SentAppend[],
  err: unknown,
): Promise<Map<string, StoredResult>> {
  if (isOutcomeUnknown(err)) throw new AppendOutcomeUnknownError(appends, err);
  // Ids the store drew for this call are stored nowhere yet: no lookup, no cost.
  if (!appends.some((a) => a.givenIds)) throw err;
  if (
    !(err instanceof WrongExpectedVersionError) &&
    !(err instanceof AppendConditionFailedError) &&
    !isDuplicateMessageId(err)
  )
    throw err;
  const stored = await storedAppends(db, ctx, appends);
  if (!stored) throw err;
  return stored;
}
