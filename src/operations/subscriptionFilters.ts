import type { ResolvedConfig } from '../config/types.js';

/**
 * What a subscription reads, from the config (the database does not know the filters). Snake-case
 * keys: it is passed to SQL as JSON and read with jsonb_to_recordset.
 */
export interface SubscriptionFilter {
  group_name: string;
  name: string;
  category: string | null;
  stream: string | null;
  types: string[] | null;
}

/** The subscription filters a config declares. */
export function subscriptionFilters(config: ResolvedConfig): SubscriptionFilter[] {
  const out: SubscriptionFilter[] = [];
  for (const g of config.groups.values())
    for (const s of g.subscriptions.values())
      out.push({
        group_name: g.name,
        name: s.name,
        category: s.category ?? null,
        stream: s.stream ?? null,
        types: s.types ?? null,
      });
  return out;
}

/*
 * SQL predicate: message `m` matches subscription row `s` carrying the filter columns (category,
 * stream, types) and `known` (false when the config does not declare it: then everything matches,
 * the conservative answer).
 */
export const MATCHES_FILTER = `(NOT s.known OR (
      (s.category IS NULL OR split_part(m.stream_name, '-', 1) = s.category)
  AND (s.stream IS NULL OR m.stream_name = s.stream)
  AND (s.types IS NULL OR m.type = ANY (s.types))))`;

/** SQL: the subscriptions table joined with the filters given as JSON in parameter `$n`. */
export const subscriptionsWithFilters = (schema: string, n: number) =>
  `SELECT s.group_name, s.name, s.status, s.log_transaction_id, s.log_position, s.updated_at,
          f.category, f.stream, f.types, f.name IS NOT NULL AS known
     FROM ${schema}.subscriptions s
     LEFT JOIN jsonb_to_recordset($${n}::jsonb)
            AS f(group_name text, name text, category text, stream text, types text[])
            ON f.group_name = s.group_name AND f.name = s.name`;
