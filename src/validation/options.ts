import { InvalidInputError } from '../errors.js';
import { assertCategory, assertStreamName, assertTypeName } from './names.js';
import { quoteValue } from './quoteValue.js';

/*
 * The library's option objects, checked where they enter, so a typo fails with a clear message
 * instead of being ignored (`direction: 'sideways'`) or reaching PostgreSQL as an out-of-range
 * bigint (`limit: 1e20`).
 */

/** Throws unless `opts` is undefined or a plain object with only the `allowed` keys. */
export function assertOptions(opts: unknown, what: string, allowed: readonly string[]): void {
  if (opts === undefined) return;
  if (typeof opts !== 'object' || opts === null || Array.isArray(opts))
    throw new InvalidInputError(`${what} options must be an object, got ${quoteValue(opts)}.`);
  for (const key of Object.keys(opts)) {
    if (!allowed.includes(key))
      throw new InvalidInputError(
        `Unknown ${what} option ${quoteValue(key)} (allowed: ${allowed.join(', ')}).`,
      );
  }
}

/** An integer within [min, Number.MAX_SAFE_INTEGER]. */
export function assertInteger(value: unknown, name: string, min: number): asserts value is number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min)
    throw new InvalidInputError(
      `${name} must be an integer from ${min} to ${Number.MAX_SAFE_INTEGER}, got ${quoteValue(value)}.`,
    );
}

/** Throws unless `value` is undefined or one of `choices`. */
export function assertOneOf<T extends string>(
  value: unknown,
  name: string,
  choices: readonly T[],
): asserts value is T | undefined {
  if (value === undefined) return;
  if (typeof value !== 'string' || !(choices as readonly string[]).includes(value))
    throw new InvalidInputError(
      `${name} must be ${choices.map((c) => JSON.stringify(c)).join(' or ')}, got ${quoteValue(value)}.`,
    );
}

/** readStream(stream, { direction, from, limit }). */
export function assertReadStreamOptions(opts: unknown): void {
  assertOptions(opts, 'readStream', ['direction', 'from', 'limit']);
  const o = (opts ?? {}) as Record<string, unknown>;
  assertOneOf(o.direction, 'direction', ['forward', 'backward']);
  if (o.from !== undefined) assertInteger(o.from, 'from', 0);
  if (o.limit !== undefined) assertInteger(o.limit, 'limit', 1);
}

const XID8 = /^\d{1,20}$/;

/** readAll / readCategory(category, { after, limit, types }). */
export function assertReadLogOptions(opts: unknown, what: string): void {
  assertOptions(opts, what, ['after', 'limit', 'types']);
  const o = (opts ?? {}) as Record<string, unknown>;
  if (o.limit !== undefined) assertInteger(o.limit, 'limit', 1);
  if (o.after !== undefined) assertLogPosition(o.after, 'after');
  if (o.types !== undefined) {
    if (!Array.isArray(o.types) || o.types.some((t) => typeof t !== 'string' || t.length === 0))
      throw new InvalidInputError(
        `types must be an array of message type names, got ${quoteValue(o.types)}.`,
      );
  }
}

/** A LogPosition `{ transactionId: "digits", globalPosition: integer }`. */
export function assertLogPosition(value: unknown, name: string): void {
  const a = value as Record<string, unknown> | null;
  if (
    typeof a !== 'object' ||
    a === null ||
    typeof a.transactionId !== 'string' ||
    !XID8.test(a.transactionId) ||
    BigInt(a.transactionId) > 18446744073709551615n
  )
    throw new InvalidInputError(
      `${name} must be a log position { transactionId: "digits", globalPosition: integer }, got ${quoteValue(value)}.`,
      'Pass the position a previous read returned, or LOG_START.',
    );
  assertInteger(a.globalPosition, `${name}.globalPosition`, 0);
}

/** Throws unless `value` is undefined or a boolean. */
export function assertBoolean(value: unknown, name: string): void {
  if (value !== undefined && typeof value !== 'boolean')
    throw new InvalidInputError(`${name} must be true or false, got ${quoteValue(value)}.`);
}

/** Throws unless `value` is undefined or a non-empty string. */
export function assertText(value: unknown, name: string): void {
  if (value !== undefined && (typeof value !== 'string' || value.length === 0))
    throw new InvalidInputError(`${name} must be a non-empty string, got ${quoteValue(value)}.`);
}

/** Throws unless `value` is undefined or an array of message type names. */
export function assertTypeList(value: unknown, name = 'types'): void {
  if (value === undefined) return;
  if (!Array.isArray(value))
    throw new InvalidInputError(`${name} must be an array of message type names, got ${quoteValue(value)}.`);
  for (const t of value) assertTypeName(t);
}

/** readByQuery(query, { after, limit }): `after` a log position or a global position. */
export function assertReadByQueryOptions(opts: unknown): void {
  assertOptions(opts, 'readByQuery', ['after', 'limit']);
  const o = (opts ?? {}) as Record<string, unknown>;
  if (o.limit !== undefined) assertInteger(o.limit, 'limit', 1);
  if (typeof o.after === 'number') assertInteger(o.after, 'after', 0);
  else if (o.after !== undefined) assertLogPosition(o.after, 'after');
}

/** readForDecision(query, { since, pageSize }). */
export function assertReadForDecisionOptions(opts: unknown): void {
  assertOptions(opts, 'readForDecision', ['since', 'pageSize']);
  const o = (opts ?? {}) as Record<string, unknown>;
  if (o.since !== undefined && typeof o.since !== 'string')
    throw new InvalidInputError(
      `since must be the snapshot text of an earlier readForDecision(), got ${quoteValue(o.since)}.`,
    );
  if (o.pageSize !== undefined) assertInteger(o.pageSize, 'pageSize', 1);
}

/** A `{ position }` or `{ time }` start (tail `from`, replay `from`/`to`). */
export function assertPositionOrTime(value: unknown, name: string, allowEnd = false): void {
  if (value === undefined || (allowEnd && value === 'end')) return;
  const v = value as Record<string, unknown> | null;
  if (typeof v === 'object' && v !== null && !Array.isArray(v)) {
    const keys = Object.keys(v);
    if (keys.length === 1 && keys[0] === 'position') {
      assertInteger(v.position, `${name}.position`, 0);
      return;
    }
    if (keys.length === 1 && keys[0] === 'time' && v.time instanceof Date && !Number.isNaN(v.time.getTime()))
      return;
  }
  throw new InvalidInputError(
    `${name} must be ${allowEnd ? '"end", ' : ''}{ position: integer } or { time: Date }, got ${quoteValue(value)}.`,
  );
}

/** tailMessages(pool, ctx, { target, from, types, follow, signal, pollMs, batchSize, reconnectMs, definitions, onStarted, onCaughtUp, wakeups }). */
export function assertTailOptions(opts: unknown): void {
  if (opts === undefined) throw new InvalidInputError('tailMessages needs options with a target.');
  assertOptions(opts, 'tailMessages', [
    'target',
    'from',
    'types',
    'follow',
    'signal',
    'pollMs',
    'batchSize',
    'reconnectMs',
    'definitions',
    'onStarted',
    'onCaughtUp',
    'wakeups',
  ]);
  const o = opts as Record<string, unknown>;
  const t = o.target as Record<string, unknown> | null;
  const keys = typeof t === 'object' && t !== null ? Object.keys(t) : [];
  if (keys.length === 1 && keys[0] === 'stream') assertStreamName(t!.stream);
  else if (keys.length === 1 && keys[0] === 'category') assertCategory(t!.category);
  else if (keys.length === 1 && keys[0] === 'all' && t!.all === true) {
    // The whole log.
  } else if (keys.length === 1 && keys[0] === 'query' && typeof t!.query === 'object' && t!.query !== null) {
    // A Query (checked by readByQuery).
  } else
    throw new InvalidInputError(
      `target must be { stream: "name" }, { category: "name" }, { query } or { all: true }, got ${quoteValue(o.target)}.`,
    );
  const from = o.from as Record<string, unknown> | undefined;
  if (typeof from === 'object' && from !== null && 'after' in from) {
    assertOptions(from, 'from', ['after']);
    assertLogPosition(from.after, 'from.after');
  } else assertPositionOrTime(o.from, 'from', true);
  for (const k of ['onStarted', 'onCaughtUp', 'wakeups'])
    if (o[k] !== undefined && typeof o[k] !== 'function')
      throw new InvalidInputError(`${k} must be a function, got ${quoteValue(o[k])}.`);
  assertTypeList(o.types);
  assertBoolean(o.follow, 'follow');
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal))
    throw new InvalidInputError(`signal must be an AbortSignal, got ${quoteValue(o.signal)}.`);
  if (o.pollMs !== undefined) assertInteger(o.pollMs, 'pollMs', 1);
  if (o.batchSize !== undefined) assertInteger(o.batchSize, 'batchSize', 1);
  if (o.reconnectMs !== undefined) assertInteger(o.reconnectMs, 'reconnectMs', 0);
  if (o.definitions !== undefined && (typeof o.definitions !== 'object' || o.definitions === null))
    throw new InvalidInputError(
      `definitions must be an object of message definitions, got ${quoteValue(o.definitions)}.`,
    );
}

/** A checkpoint selector: `{ ids: [{ group, subscription, stream }] }` or `{ group?, subscription?, status? }`. */
export function assertCheckpointSelector(sel: unknown, what: string): void {
  if (typeof sel !== 'object' || sel === null || Array.isArray(sel))
    throw new InvalidInputError(
      `${what} needs a selector { ids } or { group?, subscription?, status? }, got ${quoteValue(sel)}.`,
    );
  const o = sel as Record<string, unknown>;
  if ('ids' in o) {
    assertOptions(sel, what, ['ids']);
    if (!Array.isArray(o.ids))
      throw new InvalidInputError(
        `ids must be an array of { group, subscription, stream }, got ${quoteValue(o.ids)}.`,
      );
    for (const k of o.ids) {
      assertOptions(k, 'checkpoint key', ['group', 'subscription', 'stream']);
      const key = (k ?? {}) as Record<string, unknown>;
      if (typeof key.group !== 'string' || typeof key.subscription !== 'string')
        throw new InvalidInputError(
          `A checkpoint key is { group, subscription, stream } with string values, got ${quoteValue(k)}.`,
        );
      assertStreamName(key.stream);
    }
    return;
  }
  assertOptions(sel, what, ['group', 'subscription', 'status']);
  assertText(o.group, 'group');
  assertText(o.subscription, 'subscription');
  assertOneOf(o.status, 'status', ['active', 'retry', 'failed']);
}

/** replay(db, ctx, { group, subscription, from, to, stream, types }, { dryRun, busyTimeoutMs }). */
export function assertReplayArgs(args: unknown, opts: unknown): void {
  if (args === undefined) throw new InvalidInputError('replay needs { group, subscription }.');
  assertOptions(args, 'replay', ['group', 'subscription', 'from', 'to', 'stream', 'types']);
  const a = args as Record<string, unknown>;
  if (typeof a.group !== 'string' || a.group === '')
    throw new InvalidInputError(`replay needs a group name, got ${quoteValue(a.group)}.`);
  if (typeof a.subscription !== 'string' || a.subscription === '')
    throw new InvalidInputError(`replay needs a subscription name, got ${quoteValue(a.subscription)}.`);
  assertPositionOrTime(a.from, 'from');
  assertPositionOrTime(a.to, 'to');
  if (a.stream !== undefined) assertStreamName(a.stream);
  assertTypeList(a.types);
  assertOptions(opts, 'replay', ['dryRun', 'busyTimeoutMs']);
  const o = (opts ?? {}) as Record<string, unknown>;
  assertBoolean(o.dryRun, 'dryRun');
  if (o.busyTimeoutMs !== undefined) assertInteger(o.busyTimeoutMs, 'busyTimeoutMs', 0);
}
