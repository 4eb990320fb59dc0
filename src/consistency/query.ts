import { InvalidInputError } from '../errors.js';
import { assertTag, assertTypeName } from '../validation/names.js';
import { quoteValue } from '../validation/quoteValue.js';

/**
 * One item of a query (dcb.events semantics): a message matches when its type is one of `types`
 * (any type when empty or absent) and it carries every tag in `tags` (no tag filter when empty or
 * absent).
 */
export interface QueryItem {
  types?: readonly string[];
  tags?: readonly string[];
}

/**
 * A query over tagged messages: a message matches when it matches any item. A query without
 * items matches every message (`Query.all()`).
 */
export class Query {
  readonly items: readonly QueryItem[];

  private constructor(items: readonly QueryItem[]) {
    this.items = items;
  }

  /** Matches every message. */
  static all(): Query {
    return new Query([]);
  }

  /** A query matching any of the items. Validates and normalises (sorted, without duplicates). */
  static of(...items: QueryItem[]): Query {
    if (items.length === 0)
      throw new InvalidInputError('A query needs at least one item; use Query.all() to match everything.');
    return new Query(items.map(normaliseItem));
  }

  /** Shorthand for a one-item query. */
  static where(item: QueryItem): Query {
    return Query.of(item);
  }

  /** True for `Query.all()` or a query with an item that has neither types nor tags. */
  get matchesAll(): boolean {
    return this.items.length === 0 || this.items.some((i) => !i.types?.length && !i.tags?.length);
  }

  /** True when `message` matches (the same rule the database applies). */
  matches(message: { type: string; tags?: readonly string[] }): boolean {
    if (this.items.length === 0) return true;
    const tags = message.tags ?? [];
    return this.items.some(
      (i) =>
        (!i.types?.length || i.types.includes(message.type)) && (i.tags ?? []).every((t) => tags.includes(t)),
    );
  }

  /** A stable text form (for snapshot keys and logs). */
  toString(): string {
    return JSON.stringify(this.items.map((i) => ({ types: i.types ?? [], tags: i.tags ?? [] })));
  }
}

function checkStrings(values: unknown, what: string): string[] {
  if (values === undefined) return [];
  if (!Array.isArray(values))
    throw new InvalidInputError(`Query item ${what} must be an array of strings, got ${quoteValue(values)}.`);
  for (const v of values) {
    if (what === 'tags') assertTag(v, ' in a query item');
    else assertTypeName(v, 'query item type');
  }
  return [...new Set(values as string[])].sort();
}

function normaliseItem(item: QueryItem): QueryItem {
  if (typeof item !== 'object' || item === null)
    throw new InvalidInputError(`Invalid query item ${quoteValue(item)}: expected { types?, tags? }.`);
  return { types: checkStrings(item.types, 'types'), tags: checkStrings(item.tags, 'tags') };
}

/** A tag `key:value` from its parts. */
export function tag(key: string, value: string | number): string {
  return `${key}:${value}`;
}
