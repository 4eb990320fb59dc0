import type { Query } from './query.js';

/*
 * Advisory lock keys of conditional appends and of every write (hashed to 64-bit lock ids by the
 * database, see below).
 *
 * A condition item (types T, tags G) matches a message (type t, tags S) when t is in T (or T is
 * empty) and G is a subset of S. The item locks EXCLUSIVELY:
 *   T and G given: (t, g0) for every t in T, g0 = the first tag of G (any one tag of G would do:
 *                  every matching message carries it);
 *   T only:        (t, *) for every t in T;
 *   G only:        (*, g0);
 *   neither:       (*, *).
 * A message locks SHARED every key any matching item could take: (type, *), (*, *), and (*, g)
 * and (type, g) for each of its tags. So a condition and a message it matches always share a key
 * (one exclusive, one shared: they serialise), while writers never block writers and conditions
 * about other types or tags never block each other. Every write takes its messages' keys (the
 * store's INSERTs, append_to_stream() in migration 0012), not only conditional appends: a
 * condition sees every write it could match.
 */

const SEP = '\u001f';
const ANY = '';

function key(type: string, tag: string): string {
  return `${type === ANY ? '*' : `t=${type}`}${SEP}${tag === ANY ? '*' : `g=${tag}`}`;
}

/** Keys a condition's check must hold exclusively. */
export function conditionLockKeys(query: Query): string[] {
  if (query.items.length === 0) return [key(ANY, ANY)];
  const keys = new Set<string>();
  for (const item of query.items) {
    const types = item.types ?? [];
    const firstTag = item.tags?.[0];
    if (types.length === 0) keys.add(key(ANY, firstTag ?? ANY));
    else for (const t of types) keys.add(key(t, firstTag ?? ANY));
  }
  return [...keys];
}

/** Keys an appended message holds shared, so that every condition it matches waits for it. */
export function messageLockKeys(message: { type: string; tags?: readonly string[] }): string[] {
  const keys = [key(ANY, ANY), key(message.type, ANY)];
  for (const g of message.tags ?? []) keys.push(key(ANY, g), key(message.type, g));
  return keys;
}

/*
 * A key's 64-bit advisory lock id is computed by the database, lock_id() in migration 0012
 * (hashtextextended of the schema-qualified key): one definition for every writer, Node or SQL.
 * Every statement takes its ids in ascending order, which is what keeps two appenders from
 * deadlocking on them. A collision only makes two unrelated keys wait for each other.
 */

/** Keys to take, each with its mode: deduplicated, exclusive winning over shared. */
export interface LockSet {
  keys: string[];
  exclusive: boolean[];
}

/**
 * The advisory locks of one conditional append: its condition's keys exclusively, its messages'
 * keys shared.
 */
export function appendLocks(
  condition: Query | undefined,
  messages: readonly { type: string; tags?: readonly string[] }[],
): LockSet {
  const modes = new Map<string, boolean>();
  for (const m of messages) for (const k of messageLockKeys(m)) if (!modes.has(k)) modes.set(k, false);
  if (condition) for (const k of conditionLockKeys(condition)) modes.set(k, true);
  return { keys: [...modes.keys()], exclusive: [...modes.values()] };
}

/** The shared keys of every message written (deduplicated). */
export function messagesLockKeys(messages: readonly { type: string; tags?: readonly string[] }[]): string[] {
  if (messages.length === 1) return messageLockKeys(messages[0]!);
  // As messageLockKeys for each, each type's keys built once (a batch is mostly of a few types).
  const keys = new Set<string>([key(ANY, ANY)]);
  const types = new Set<string>();
  for (const m of messages) {
    if (!types.has(m.type)) {
      types.add(m.type);
      keys.add(key(m.type, ANY));
    }
    for (const g of m.tags ?? []) keys.add(key(ANY, g)).add(key(m.type, g));
  }
  return [...keys];
}

/**
 * SQL taking the advisory locks `keys` (a text[] expression) in ascending id order, all shared, or
 * the first `exclusiveCount` (an int expression) exclusively and the rest shared (as lockParams()
 * orders a LockSet). It is a scalar subquery (evaluating to the number of keys, > 0), run once per
 * statement. Two keys of one id (a hash collision) are taken one after the other, the exclusive
 * one first: a lock its own transaction holds exclusively is granted to it shared at once.
 */
export function takeLocksSql(s: string, keys: string, exclusiveCount?: string): string {
  if (exclusiveCount === undefined)
    return `(SELECT count(pg_advisory_xact_lock_shared(l.id))
       FROM (SELECT DISTINCT ${s}.lock_id(k) AS id FROM unnest(${keys}) AS k ORDER BY 1) l)`;
  return `(SELECT count(CASE WHEN l.i <= ${exclusiveCount} THEN pg_advisory_xact_lock(l.id) ELSE pg_advisory_xact_lock_shared(l.id) END)
       FROM (SELECT ${s}.lock_id(u.k) AS id, u.i FROM unnest(${keys}) WITH ORDINALITY AS u(k, i) ORDER BY 1, 2) l)`;
}

/** A LockSet as takeLocksSql()'s parameters: its keys, the exclusive ones first, and their number. */
export function lockParams(locks: LockSet): [keys: string[], exclusiveCount: number] {
  const keys: string[] = [];
  for (const [i, key] of locks.keys.entries()) if (locks.exclusive[i]) keys.push(key);
  const exclusiveCount = keys.length;
  for (const [i, key] of locks.keys.entries()) if (!locks.exclusive[i]) keys.push(key);
  return [keys, exclusiveCount];
}

/**
 * takeLocksSql for exactly two keys (an untagged message's): a boolean SQL condition, true once
 * both are held shared, taken in ascending id order like the rest. Two scalar calls cost a few
 * microseconds where the array form's unnest, sort and aggregate cost about 20 (bench/README,
 * session 12).
 */
export function takeTwoLocksSql(s: string, a: string, b: string): string {
  return `(SELECT pg_advisory_xact_lock_shared(least(k.a, k.b))::text || pg_advisory_xact_lock_shared(greatest(k.a, k.b))::text
       FROM (SELECT ${s}.lock_id(${a}) AS a, ${s}.lock_id(${b}) AS b) k) IS NOT NULL`;
}
