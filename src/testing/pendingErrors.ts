import { AppendOutcomeUnknownError, MessageIdConflictError } from '../errors.js';

/*
 * The typed errors of idempotent appends, built the way the PostgreSQL store builds them, so that
 * code under test sees the same classes from the in-memory store and the fault injector.
 */

/** Message ids already stored, but not as this append would write them. */
export function messageIdConflict(ids: readonly string[], detail: string): MessageIdConflictError {
  return new MessageIdConflictError(ids, detail);
}

/**
 * The reply to an append was lost: it may or may not have been written. `idsByStream` gives each
 * stream's ids when the caller knows them; otherwise every id is listed under the first stream.
 */
export function appendOutcomeUnknown(
  streams: readonly string[],
  ids: readonly string[],
  idsByStream?: ReadonlyMap<string, readonly string[]>,
): AppendOutcomeUnknownError {
  const appends = streams.map((stream, i) => ({
    stream,
    ids: idsByStream?.get(stream) ?? (i === 0 ? ids : []),
  }));
  return new AppendOutcomeUnknownError(appends, undefined);
}
