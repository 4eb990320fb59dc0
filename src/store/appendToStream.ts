import type { Queryable, SqlContext } from '../db/queryable.js';
import { statement } from '../db/queryable.js';
import { SqlState, sqlStateOf } from '../db/sqlstate.js';
import { WrongExpectedVersionError } from '../errors.js';
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
 * Append messages to one stream in one round trip (see append_to_stream() in the first
 * migration). Writes nothing when the expected version does not match.
 */
export async function appendToStream(
  db: Queryable,
  ctx: SqlContext,
  stream: string,
  expected: ExpectedVersion,
  messages: PreparedMessage[],
): Promise<AppendResult> {
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
    // A writer that bypasses append_to_stream() and its lock can still win the race for a position.
    if (
      state === SqlState.uniqueViolation &&
      (err as { constraint?: string }).constraint === 'messages_stream_position_key'
    ) {
      throw new WrongExpectedVersionError(stream, expected, -1);
    }
    throw err;
  }
}

export const TAG_SEPARATOR_CHAR = TAG_SEPARATOR;
