import type { Query } from './query.js';

/*
 * Advisory lock keys for conditional appends (hashed to 64-bit lock ids by lockId() below).
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
 * about other types or tags never block each other.
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
 * A key's 64-bit advisory lock id: two 32-bit multiplicative hashes of the schema-qualified key
 * (cyrb53's mixing, widened to 64 bits). Every client computes the same id and takes the ids in
 * ascending order, which is what keeps two appenders from deadlocking on them. A collision only
 * makes two unrelated keys wait for each other.
 */
export function lockId(schema: string, key: string): bigint {
  const text = `beckett.dcb:${schema}:${key}`;
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 2654435761);
    h2 = Math.imul(h2 ^ c, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return BigInt.asIntN(64, (BigInt(h2 >>> 0) << 32n) | BigInt(h1 >>> 0));
}

/**
 * The advisory locks of one conditional append, in the order to take them (ascending id) with
 * their mode: deduplicated, exclusive winning over shared.
 */
export function appendLocks(
  schema: string,
  condition: Query | undefined,
  messages: readonly { type: string; tags?: readonly string[] }[],
): { ids: string[]; exclusive: boolean[] } {
  const modes = new Map<string, boolean>();
  for (const m of messages) for (const k of messageLockKeys(m)) if (!modes.has(k)) modes.set(k, false);
  if (condition) for (const k of conditionLockKeys(condition)) modes.set(k, true);
  const byId = new Map<bigint, boolean>();
  for (const [k, excl] of modes) {
    const id = lockId(schema, k);
    byId.set(id, excl || (byId.get(id) ?? false));
  }
  return inLockOrder(byId);
}

/** Locks (id -> exclusive) as the arrays the SQL takes them from, ascending by id. */
export function inLockOrder(byId: ReadonlyMap<bigint, boolean>): { ids: string[]; exclusive: boolean[] } {
  const ids = [...byId.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return { ids: ids.map(String), exclusive: ids.map((id) => byId.get(id)!) };
}
