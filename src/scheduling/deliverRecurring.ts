import type { ResolvedRecurringMessage } from '../config/types.js';
import { toError } from '../errors.js';
import type { MessageStore } from '../store/messageStore.js';
import { Attr, SpanKind, withSpan } from '../telemetry/tracing.js';
import { failureBackoffMs, isDuplicateMessageId } from './deliverScheduled.js';
import { appendUnderSavepoint, inDeliveryTransaction } from './deliveryTransaction.js';
import {
  advanceRecurring,
  claimDueRecurring,
  retryRecurringLater,
  selectRecurring,
  upsertRecurring,
} from './recurringMessagesSql.js';
import { nextOccurrence } from './resolveRecurring.js';
import { idFromKey } from './scheduleMessage.js';

/** The id of one occurrence's message: the same for every worker, so the store keeps it once. */
export function occurrenceId(name: string, occurrence: Date): string {
  return idFromKey(`beckett.recurring:${name}:${occurrence.toISOString()}`);
}

/**
 * Write the config's recurring messages to the database (first occurrence after now for a new or
 * changed schedule). Safe to run from every worker at once.
 */
export async function syncRecurringMessages(
  store: MessageStore,
  recurring: ResolvedRecurringMessage[],
  now: Date = new Date(),
): Promise<void> {
  for (const r of recurring) {
    const next = nextOccurrence(r.cron, r.timezone, now);
    if (!next) continue;
    await upsertRecurring(store.pool, store.sqlContext, {
      name: r.name,
      cron: r.cron,
      timezone: r.timezone,
      stream: r.stream,
      type: r.message.type,
      data: r.message.data,
      next,
    });
  }
}

export interface RecurringDeliveryResult {
  /** Occurrences appended now. */
  delivered: number;
  /** Occurrences already in the store (by their id): not appended again. */
  duplicates: number;
  /** Occurrences whose append failed (recorded in last_error; retried after a backoff, never skipped). */
  failed: number;
  claimed: number;
  /** Names of the recurring messages appended now. */
  deliveredNames: string[];
}

/**
 * Append every due occurrence of the given recurring messages, once: each due row is claimed with
 * FOR UPDATE SKIP LOCKED, its message appended with an id derived from (name, occurrence) and the
 * row advanced to the next occurrence, all in one transaction. An append that fails leaves the row
 * at its occurrence, retried after a backoff: a schedule never moves past an occurrence that was
 * not appended. Occurrences missed while no worker ran are coalesced into one (the schedule
 * continues from now).
 */
export async function deliverDueRecurring(
  store: MessageStore,
  recurring: ResolvedRecurringMessage[],
  opts: { limit?: number } = {},
): Promise<RecurringDeliveryResult> {
  const result: RecurringDeliveryResult = {
    delivered: 0,
    duplicates: 0,
    failed: 0,
    claimed: 0,
    deliveredNames: [],
  };
  if (recurring.length === 0) return result;
  const ctx = store.sqlContext;
  await inDeliveryTransaction(store, async (client) => {
    const { rows, now } = await claimDueRecurring(
      client,
      ctx,
      recurring.map((r) => r.name),
      opts.limit ?? 100,
    );
    result.claimed = rows.length;
    const tx = store.withTransaction(client);
    for (const row of rows) {
      const occurrence = row.next_occurrence_at;
      let appended = true;
      try {
        await appendUnderSavepoint(client, 'beckett_recurring', () =>
          withSpan(
            `${row.stream_name} deliver recurring`,
            {
              kind: SpanKind.INTERNAL,
              attributes: {
                [Attr.system]: 'beckett',
                [Attr.destination]: row.stream_name,
                [Attr.messageType]: row.type,
                'beckett.recurring.name': row.name,
              },
            },
            () =>
              tx.append(row.stream_name, {
                id: occurrenceId(row.name, occurrence),
                type: row.type,
                data: row.data,
                metadata: { recurring: row.name, occurrence: occurrence.toISOString() },
              }),
          ),
        );
        result.delivered += 1;
        result.deliveredNames.push(row.name);
      } catch (err) {
        if (isDuplicateMessageId(err)) result.duplicates += 1;
        else {
          // Not appended: the row stays at this occurrence and is tried again after a backoff.
          appended = false;
          result.failed += 1;
          await retryRecurringLater(client, ctx, {
            name: row.name,
            error: toError(err).message,
            retryInMs: failureBackoffMs(row.attempts),
          });
        }
      }
      if (!appended) continue;
      const from = now.getTime() > occurrence.getTime() ? now : occurrence;
      const next = nextOccurrence(row.cron, row.timezone, from) ?? null;
      await advanceRecurring(client, ctx, { name: row.name, occurrence, next });
    }
  });
  if (result.delivered > 0) store.notify();
  return result;
}

export interface RecurringMessageInfo {
  name: string;
  cron: string;
  timezone: string;
  stream: string;
  type: string;
  data: unknown;
  nextOccurrenceAt: Date;
  lastOccurrenceAt: Date | undefined;
  lastError: string | undefined;
}

/** Recurring messages known to the database, the next due first. */
export async function listRecurringMessages(store: MessageStore): Promise<RecurringMessageInfo[]> {
  const rows = await selectRecurring(store.pool, store.sqlContext);
  return rows.map((r) => ({
    name: r.name,
    cron: r.cron,
    timezone: r.timezone,
    stream: r.stream_name,
    type: r.type,
    data: r.data,
    nextOccurrenceAt: r.next_occurrence_at,
    lastOccurrenceAt: r.last_occurrence_at ?? undefined,
    lastError: r.last_error ?? undefined,
  }));
}
