import { createHash } from 'node:crypto';
import type { ResolvedSubscription } from '../config/types.js';

/**
 * What decides which messages a subscription's handler gets: its filter and its unmapped-type
 * policy. Two processes of one group whose definitions differ (a rolling deploy) must not both act
 * on the subscription: see migrations/0011_subscription_definitions.sql.
 */
export interface SubscriptionDefinition {
  /** Sorted; null: every type. */
  types: string[] | null;
  category: string | null;
  stream: string | null;
  onUnmappedType: ResolvedSubscription['onUnmappedType'];
}

const cache = new WeakMap<
  ResolvedSubscription,
  { definition: SubscriptionDefinition; fingerprint: string }
>();

function describe(sub: ResolvedSubscription) {
  let found = cache.get(sub);
  if (!found) {
    const definition: SubscriptionDefinition = {
      types: sub.types ? [...new Set(sub.types)].sort() : null,
      category: sub.category ?? null,
      stream: sub.stream ?? null,
      onUnmappedType: sub.onUnmappedType,
    };
    const fingerprint = createHash('sha256').update(JSON.stringify(definition)).digest('hex').slice(0, 16);
    found = { definition, fingerprint };
    cache.set(sub, found);
  }
  return found;
}

export function definitionOf(sub: ResolvedSubscription): SubscriptionDefinition {
  return describe(sub).definition;
}

/** A short hash of the definition: equal for equal filters, whatever the order of `types`. */
export function fingerprintOf(sub: ResolvedSubscription): string {
  return describe(sub).fingerprint;
}

/** The definition in a sentence, for warnings. */
export function showDefinition(d: SubscriptionDefinition | null | undefined): string {
  if (!d) return 'an unknown definition';
  const parts = [
    d.types ? `types [${d.types.join(', ')}]` : 'every type',
    ...(d.category !== null ? [`category "${d.category}"`] : []),
    ...(d.stream !== null ? [`stream "${d.stream}"`] : []),
    `onUnmappedType '${d.onUnmappedType}'`,
  ];
  return parts.join(', ');
}

/** Whether a stream is in the subscription's stream or category filter. */
export function streamInFilter(
  sub: Pick<ResolvedSubscription, 'stream' | 'category'>,
  stream: string,
): boolean {
  if (sub.stream !== undefined && stream !== sub.stream) return false;
  if (sub.category !== undefined) {
    const dash = stream.indexOf('-');
    if ((dash < 0 ? stream : stream.slice(0, dash)) !== sub.category) return false;
  }
  return true;
}
