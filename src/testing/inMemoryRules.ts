import type { AppendCondition } from '../consistency/conditionalAppend.js';
import { AppendConditionFailedError, InvalidInputError } from '../errors.js';
import type { ExpectedVersion, LogPosition, RecordedMessage } from '../store/types.js';

/*
 * The rules the in-memory store shares with PostgreSQL's, as plain functions: expected versions,
 * the log order, what a read returns, and its read snapshots.
 */

/** A message as the in-memory store keeps it: the record, and its transaction id as a number. */
export interface Stored {
  message: RecordedMessage;
  txid: bigint;
}

export const SNAPSHOT_PREFIX = 'memory:';

export function assertExpectedVersion(v: unknown): asserts v is ExpectedVersion {
  if (v === 'any' || v === 'no_stream' || v === 'stream_exists') return;
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0) return;
  throw new InvalidInputError(
    `Invalid expected version ${JSON.stringify(v)}.`,
    'Use "any", "no_stream", "stream_exists" or a stream version (an integer >= 0).',
  );
}

export function versionMatches(expected: ExpectedVersion, actual: number): boolean {
  if (expected === 'any') return true;
  if (expected === 'no_stream') return actual === 0;
  if (expected === 'stream_exists') return actual > 0;
  return actual === expected;
}

export function firstPositionFits(expected: ExpectedVersion, first: number): boolean {
  if (expected === 'any') return true;
  if (expected === 'stream_exists') return first > 1;
  if (expected === 'no_stream') return first === 1;
  return first === expected + 1;
}

export function compareLog(txid: bigint, globalPosition: number, p: LogPosition): number {
  const t = BigInt(p.transactionId);
  if (txid !== t) return txid < t ? -1 : 1;
  return globalPosition - p.globalPosition;
}

/** A copy, as a read from PostgreSQL would give (data and metadata as stored JSON). */
export function copy(s: Stored): RecordedMessage {
  const m = s.message;
  return {
    ...m,
    data: structuredClone(m.data),
    metadata: structuredClone(m.metadata),
    tags: [...m.tags],
    createdAt: new Date(m.createdAt),
  };
}

/** JSON in, JSON out: what jsonb keeps (no undefined, Dates as strings, no class instances). */
export function asJson(value: unknown): unknown {
  return JSON.parse(JSON.stringify(value));
}

export function parseSnapshot(snapshot: string): number {
  const n = snapshot.startsWith(SNAPSHOT_PREFIX)
    ? Number(snapshot.slice(SNAPSHOT_PREFIX.length))
    : Number.NaN;
  if (!Number.isInteger(n) || n < 0)
    throw new InvalidInputError(
      `Read snapshot ${JSON.stringify(snapshot)} does not come from this in-memory store.`,
      "Pass the result of this store's readForDecision(); PostgreSQL snapshots mean nothing here.",
    );
  return n;
}

/** When a scheduled message is due: `{ at }`, or `{ delay }` ms after `now` (the store's clock). */
export function deliveryTime(when: { at: Date } | { delay: number }, now: Date): Date {
  if (typeof when === 'object' && when !== null) {
    if ('at' in when && when.at instanceof Date && !Number.isNaN(when.at.getTime())) return when.at;
    if ('delay' in when && typeof when.delay === 'number' && Number.isFinite(when.delay) && when.delay >= 0)
      return new Date(now.getTime() + when.delay);
  }
  throw new InvalidInputError('Give when to deliver: { at: Date } or { delay: milliseconds >= 0 }.');
}

/**
 * The condition's failure if a message of `log` matches its query and was not seen by the
 * decision: after its global position, its log position, or its read snapshot (or at all).
 */
export function conditionViolation(log: readonly Stored[], condition: AppendCondition): Error | undefined {
  const after = condition.after;
  let seen: (s: Stored) => boolean;
  if (after === undefined) seen = () => false;
  else if (typeof after === 'number') seen = (s) => s.message.globalPosition <= after;
  else if ('snapshot' in after) {
    const limit = parseSnapshot(after.snapshot);
    seen = (s) => s.message.globalPosition <= limit;
  } else seen = (s) => compareLog(s.txid, s.message.globalPosition, after) <= 0;
  if (!log.some((s) => !seen(s) && condition.failIfEventsMatch.matches(s.message))) return undefined;
  return new AppendConditionFailedError(
    typeof after === 'number' ? after : after && !('snapshot' in after) ? after.globalPosition : undefined,
  );
}
