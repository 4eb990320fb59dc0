import { toError } from '../errors.js';
import type { MessageStore } from '../store/messageStore.js';
import { isDuplicateMessageId } from '../store/storedAppends.js';
import { Attr, contextFromTraceparent, SpanKind, withSpan } from '../telemetry/tracing.js';
import { appendUnderSavepoint, inDeliveryTransaction } from './deliveryTransaction.js';
import { claimDueScheduled, deleteDelivered, recordDeliveryFailure } from './scheduledMessagesSql.js';

export interface DeliveryResult {
  /** Appended to their stream now. */
  delivered: number;
  /** Already in the store under their id (scheduled again after a delivery): dropped, not appended. */
  duplicates: number;
  /** The append failed (e.g. the data no longer passes its schema): retried later with backoff. */
  failed: number;
  /** Claimed rows (delivered + duplicates + failed); equal to the limit means more may be due. */
  claimed: number;
}

export { isDuplicateMessageId, MESSAGE_ID_CONSTRAINT } from '../store/storedAppends.js';

/** Backoff for a failing delivery: 1 s, 2 s, 4 s, ... up to an hour. */
export function failureBackoffMs(attempts: number): number {
  return Math.min(3_600_000, 1000 * 2 ** Math.min(attempts, 12));
}

/**
 * Deliver up to `limit` due scheduled messages in one transaction: claim them (FOR UPDATE SKIP
 * LOCKED, so concurrent deliverers split the work), append each to its stream and delete the
 * claimed rows, then commit. A crash before the commit leaves every row in place and nothing
 * appended; after it, every row is gone and every message appended. Subscribers are notified
 * after the commit.
 */
export async function deliverDueMessages(
  store: MessageStore,
  opts: { limit?: number } = {},
): Promise<DeliveryResult> {
  const ctx = store.sqlContext;
  const result: DeliveryResult = { delivered: 0, duplicates: 0, failed: 0, claimed: 0 };
  await inDeliveryTransaction(store, async (client) => {
    const rows = await claimDueScheduled(client, ctx, opts.limit ?? 100);
    result.claimed = rows.length;
    const tx = store.withTransaction(client);
    const done: string[] = [];
    for (const row of rows) {
      // A savepoint per message: one bad message must not hold back the others.
      const { traceparent, ...metadata } = row.metadata;
      try {
        await appendUnderSavepoint(client, 'beckett_deliver', () =>
          withSpan(
            `${row.stream_name} deliver scheduled`,
            {
              kind: SpanKind.INTERNAL,
              parent: contextFromTraceparent(traceparent),
              attributes: {
                [Attr.system]: 'beckett',
                [Attr.destination]: row.stream_name,
                [Attr.messageId]: row.id,
                [Attr.messageType]: row.type,
              },
            },
            () =>
              tx.append(row.stream_name, {
                id: row.id,
                type: row.type,
                data: row.data,
                metadata: { ...metadata, scheduledAt: row.deliver_at.toISOString() },
                tags: row.tags,
              }),
          ),
        );
        done.push(row.id);
        result.delivered += 1;
      } catch (err) {
        if (isDuplicateMessageId(err)) {
          done.push(row.id);
          result.duplicates += 1;
        } else {
          const e = toError(err);
          await recordDeliveryFailure(client, ctx, row.id, e.message, failureBackoffMs(row.attempts));
          result.failed += 1;
        }
      }
    }
    await deleteDelivered(client, ctx, done);
  });
  if (result.delivered > 0) store.notify();
  return result;
}
