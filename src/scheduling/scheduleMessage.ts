import { createHash } from 'node:crypto';
import type { Queryable } from '../db/queryable.js';
import { InvalidInputError } from '../errors.js';
import type { PreparedMessage } from '../store/appendToStream.js';
import { checkStreamName, type MessageStore } from '../store/messageStore.js';
import type { Metadata, NewMessage, RecordedMessage } from '../store/types.js';
import { quoteValue } from '../validation/quoteValue.js';
import {
  deleteScheduled,
  insertScheduled,
  type ScheduledRow,
  selectScheduled,
} from './scheduledMessagesSql.js';

/** When to deliver: at a time, or after a delay in milliseconds (counted on the database clock). */
export type ScheduleWhen = { at: Date } | { delay: number };

export interface ScheduleOptions {
  /** Schedule inside your transaction (it is delivered only if you commit). Default: the store's pool. */
  client?: Queryable;
}

export interface ScheduledMessage {
  id: string;
  stream: string;
  type: string;
  data: unknown;
  metadata: Metadata;
  tags: string[];
  deliverAt: Date;
  /** Failed delivery attempts so far (0 normally). */
  attempts: number;
  lastError: string | undefined;
  createdAt: Date;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * A stable UUID for a key (name-based, RFC 9562 version 8 layout over SHA-256). Use it to give a
 * scheduled message an id you can compute again to cancel it, e.g. `idFromKey('payment-timeout:' + orderId)`.
 */
export function idFromKey(key: string): string {
  const b = createHash('sha256').update(key).digest().subarray(0, 16);
  b[6] = (b[6]! & 0x0f) | 0x80;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

const MAX_DELAY_MS = 100 * 365.25 * 24 * 3600 * 1000;

function resolveWhen(when: ScheduleWhen): { at: Date | undefined; delayMs: number | undefined } {
  if (typeof when !== 'object' || when === null)
    throw new InvalidInputError('Give when to deliver: { at: Date } or { delay: milliseconds }.');
  if ('at' in when) {
    if (
      !(when.at instanceof Date) ||
      Number.isNaN(when.at.getTime()) ||
      when.at.getUTCFullYear() < 1 ||
      when.at.getUTCFullYear() > 9999
    )
      throw new InvalidInputError(
        `Invalid schedule time ${quoteValue(when.at)}: "at" must be a valid Date in the years 1-9999.`,
      );
    return { at: when.at, delayMs: undefined };
  }
  if ('delay' in when) {
    if (
      typeof when.delay !== 'number' ||
      !Number.isFinite(when.delay) ||
      when.delay < 0 ||
      when.delay > MAX_DELAY_MS
    )
      throw new InvalidInputError(
        `Invalid delay ${quoteValue(when.delay)}: "delay" is milliseconds from 0 to ${MAX_DELAY_MS} (100 years).`,
      );
    return { at: undefined, delayMs: when.delay };
  }
  throw new InvalidInputError('Give when to deliver: { at: Date } or { delay: milliseconds }.');
}

/**
 * Schedule `message` to be appended to `stream` at a time or after a delay; returns its id (the
 * message's `id` when given, else a new UUIDv7), which is also the id of the appended message.
 * Scheduling an id that is still pending again is a no-op. Data is validated now, against the
 * type's schema. Delivery runs in workers (see createSchedulerService).
 */
export async function scheduleMessage(
  store: MessageStore,
  stream: string,
  message: NewMessage,
  when: ScheduleWhen,
  opts: ScheduleOptions = {},
): Promise<string> {
  checkStreamName(stream);
  const { at, delayMs } = resolveWhen(when);
  // Delivery continues the scheduling trace: the prepared metadata carries the span active now.
  const [{ id, type, data, metadata, tags }] = (await store.prepareMessages([message])) as [PreparedMessage];
  await insertScheduled(opts.client ?? store.pool, store.sqlContext, {
    id,
    stream,
    type,
    data,
    metadata,
    tags,
    at,
    delayMs,
  });
  return id;
}

/**
 * Cancel a pending scheduled message. True when it was pending (it will never be appended); false
 * when it was already delivered or never existed. A delivery in progress wins: the cancel waits for
 * it and returns false.
 */
export async function cancelScheduledMessage(
  store: MessageStore,
  id: string,
  opts: ScheduleOptions = {},
): Promise<boolean> {
  if (typeof id !== 'string' || !UUID.test(id))
    throw new InvalidInputError(`Invalid scheduled message id ${JSON.stringify(id)}: ids are UUIDs.`);
  return deleteScheduled(opts.client ?? store.pool, store.sqlContext, id.toLowerCase());
}

function toScheduled(r: ScheduledRow): ScheduledMessage {
  return {
    id: r.id,
    stream: r.stream_name,
    type: r.type,
    data: r.data,
    metadata: r.metadata,
    tags: r.tags,
    deliverAt: r.deliver_at,
    attempts: r.attempts,
    lastError: r.last_error ?? undefined,
    createdAt: r.created_at,
  };
}

/** Pending scheduled messages, the next due first. */
export async function listScheduledMessages(
  store: MessageStore,
  opts: { limit?: number; stream?: string } = {},
): Promise<ScheduledMessage[]> {
  const rows = await selectScheduled(store.pool, store.sqlContext, {
    limit: opts.limit ?? 1000,
    stream: opts.stream,
  });
  return rows.map(toScheduled);
}

/** What a handler's context gets: schedule and cancel, tied to the handled message. */
export interface HandlerScheduling {
  schedule(stream: string, message: NewMessage, when: ScheduleWhen): Promise<string>;
  cancelScheduled(id: string): Promise<boolean>;
}

/**
 * Scheduling for a handler call. Scheduled messages inherit the handled message's correlation id
 * and take its id as causation. Without an explicit id, the n-th message a call schedules gets an
 * id derived from (subscription, handled message, n): a retried handler schedules it once, not twice.
 * With `client` (transactional subscriptions), scheduling commits with the checkpoint.
 */
export function handlerScheduling(
  store: MessageStore,
  cause: Pick<RecordedMessage, 'id' | 'metadata'>,
  opts: { subscription: string; client?: Queryable | undefined },
): HandlerScheduling {
  let n = 0;
  const client = opts.client ? { client: opts.client } : {};
  return {
    schedule(stream, message, when) {
      n += 1;
      const id = message.id ?? idFromKey(`beckett.schedule:${opts.subscription}:${cause.id}:${n}`);
      return scheduleMessage(
        store,
        stream,
        {
          ...message,
          id,
          metadata: {
            correlationId: cause.metadata.correlationId ?? cause.id,
            causationId: cause.id,
            ...message.metadata,
          },
        },
        when,
        client,
      );
    },
    cancelScheduled(id) {
      return cancelScheduledMessage(store, id, client);
    },
  };
}
