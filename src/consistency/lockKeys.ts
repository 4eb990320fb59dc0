import type { Query } from './query.js';

/*
 * Advisory lock keys for conditional appends (hashed in SQL with a 'beckett.dcb:<schema>:' prefix).
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

/** The keys and modes of one conditional append, deduplicated (exclusive wins). */
export function appendLockKeys(
  condition: Query | undefined,
  messages: readonly { type: string; tags?: readonly string[] }[],
): { keys: string[]; exclusive: boolean[] } {
  const modes = new Map<string, boolean>();
  for (const m of messages) for (const k of messageLockKeys(m)) modes.set(k, false);
  if (condition) for (const k of conditionLockKeys(condition)) modes.set(k, true);
  return { keys: [...modes.keys()], exclusive: [...modes.values()] };
}
