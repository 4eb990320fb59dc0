import type pg from 'pg';
import type { SqlContext } from '../db/queryable.js';
import { toBeckettError } from '../db/toBeckettError.js';
import { InvalidInputError } from '../errors.js';
import { idFromKey } from '../scheduling/scheduleMessage.js';
import type { MessageStore } from '../store/messageStore.js';
import { WakeupCarrier } from '../store/notifications.js';
import type { Metadata, RecordedMessage } from '../store/types.js';
import { quoteValue } from '../validation/quoteValue.js';
import { type EnqueueRow, insertJobs } from './queueJobsSql.js';
import { type QueueNotifier, queueNotifierFor } from './queueWakeups.js';

/** What is enqueued: a message type (validated when mapped under `messages`), data and metadata. */
export interface JobMessage<Type extends string = string, Data = unknown> {
  type: Type;
  data: Data;
  metadata?: Metadata;
}

export interface EnqueueOptions {
  /** Run no earlier than this many milliseconds from now (database clock). Default 0. */
  delay?: number;
  /**
   * Ordering key: jobs with the same key run one at a time, in the order their enqueues committed.
   * A key whose job fails or is stuck holds back only that key's later jobs.
   */
  key?: string;
  /**
   * The job's id (a UUID). Enqueueing an id that is still waiting, in flight or dead is a no-op, so
   * a retried enqueue adds the job once. Default: a new UUIDv7.
   */
  id?: string;
}

/** Enqueue inside your transaction: the job exists only if it commits. */
export interface EnqueueInto {
  client?: pg.PoolClient | pg.Client;
}

const QUEUE_NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,99}$/;
const MAX_DELAY_MS = 100 * 365.25 * 24 * 3600 * 1000;

/** Throws InvalidInputError unless `queue` is a valid queue name. */
export function assertQueueName(queue: unknown): asserts queue is string {
  if (typeof queue !== 'string' || !QUEUE_NAME.test(queue))
    throw new InvalidInputError(
      `Invalid queue name ${quoteValue(queue)}: use letters, digits, "_", "-" or "." (starting with a letter, at most 100).`,
    );
}

function checkOptions(opts: unknown): EnqueueOptions {
  if (opts === undefined) return {};
  if (typeof opts !== 'object' || opts === null || Array.isArray(opts))
    throw new InvalidInputError(`Invalid enqueue options ${quoteValue(opts)}: give { delay?, key?, id? }.`);
  const o = opts as Record<string, unknown>;
  for (const k of Object.keys(o))
    if (!['delay', 'key', 'id'].includes(k))
      throw new InvalidInputError(`Unknown enqueue option "${k}": the options are delay, key and id.`);
  if (
    o.delay !== undefined &&
    (typeof o.delay !== 'number' || !Number.isFinite(o.delay) || o.delay < 0 || o.delay > MAX_DELAY_MS)
  )
    throw new InvalidInputError(
      `Invalid delay ${quoteValue(o.delay)}: "delay" is milliseconds from 0 to ${MAX_DELAY_MS} (100 years).`,
    );
  if (o.key !== undefined && (typeof o.key !== 'string' || o.key.length === 0 || o.key.length > 1000))
    throw new InvalidInputError(
      `Invalid key ${quoteValue(o.key)}: a key is a non-empty string (at most 1000).`,
    );
  return o as EnqueueOptions;
}

/** One job to enqueue with enqueueJobs(). */
export interface JobToEnqueue extends EnqueueOptions {
  message: JobMessage;
}

/**
 * Enqueue jobs to `queue`, in one statement; returns their ids (also those that already existed).
 * Messages are checked like appended ones (type name, data, metadata, the type's schema when it is
 * mapped). With `into.client` the jobs are written in that transaction (and announced to the
 * workers once it commits); else on the store's pool.
 */
export async function enqueueJobs(
  store: MessageStore,
  queue: string,
  jobs: JobToEnqueue[],
  into: EnqueueInto = {},
): Promise<string[]> {
  assertQueueName(queue);
  if (!Array.isArray(jobs) || jobs.length === 0)
    throw new InvalidInputError('Nothing to enqueue: the job list is empty.');
  const rows: EnqueueRow[] = [];
  for (const job of jobs) {
    if (typeof job !== 'object' || job === null)
      throw new InvalidInputError(`Invalid job ${quoteValue(job)}: give { message, delay?, key?, id? }.`);
    const { message, ...rest } = job;
    const opts = checkOptions(rest);
    if (typeof message !== 'object' || message === null || Array.isArray(message))
      throw new InvalidInputError(
        `Invalid job message ${quoteValue(message)}: a job message is an object { type, data, metadata? }.`,
      );
    for (const k of Object.keys(message))
      if (!['type', 'data', 'metadata'].includes(k))
        throw new InvalidInputError(
          `Unknown key "${k}" in a job message: a job message is { type, data, metadata? } (give id, key and delay as options).`,
        );
    // The store's own checks and completion (validation, id, inherited metadata, traceparent).
    const [prepared] = await store.prepareMessages([
      {
        type: message.type,
        data: message.data,
        ...(message.metadata ? { metadata: message.metadata } : {}),
        ...(opts.id !== undefined ? { id: opts.id } : {}),
      },
    ]);
    rows.push({
      id: prepared!.id,
      key: opts.key ?? null,
      type: prepared!.type,
      data: JSON.stringify(prepared!.data),
      metadata: JSON.stringify(prepared!.metadata),
      delayMs: opts.delay ?? 0,
    });
  }
  const notifier = queueNotifierFor(store.pool, store.sqlContext);
  try {
    if (into.client) {
      const { xid } = await insertJobs(into.client, store.sqlContext, queue, rows);
      notifier.afterCommit(xid, queue);
    } else {
      const carried = await store.track(() => batcherFor(store, queue).insert(rows));
      if (!carried) notifier.notify(queue);
    }
  } catch (err) {
    throw toBeckettError(err, { schema: store.schema });
  }
  return rows.map((r) => r.id);
}

/** Enqueue one job; returns its id. See enqueueJobs. */
export async function enqueue(
  store: MessageStore,
  queue: string,
  message: JobMessage,
  opts?: EnqueueOptions,
  into: EnqueueInto = {},
): Promise<string> {
  const [id] = await enqueueJobs(store, queue, [{ ...checkOptions(opts), message }], into);
  return id!;
}

/** What a handler's context gets: enqueue tied to the handled message (or job). */
export type HandlerEnqueue = (queue: string, message: JobMessage, opts?: EnqueueOptions) => Promise<string>;

/**
 * Enqueue for a handler call. Jobs inherit the cause's correlation id and take its id as causation.
 * Without an explicit id, the n-th job a call enqueues gets an id derived from (who, cause, n): a
 * retried handler enqueues it once, not twice, while the first job is not yet done. With `client`
 * (transactional subscriptions), the jobs commit with the checkpoint.
 */
export function handlerEnqueue(
  store: MessageStore,
  cause: Pick<RecordedMessage, 'id' | 'metadata'>,
  opts: { who: string; client?: pg.PoolClient | undefined },
): HandlerEnqueue {
  let n = 0;
  return (queue, message, enqueueOpts) => {
    n += 1;
    const o = checkOptions(enqueueOpts);
    const id = o.id ?? idFromKey(`beckett.enqueue:${opts.who}:${cause.id}:${n}`);
    return enqueue(
      store,
      queue,
      {
        ...message,
        metadata: {
          correlationId: cause.metadata.correlationId ?? cause.id,
          causationId: cause.id,
          ...message?.metadata,
        },
      },
      { ...o, id },
      opts.client ? { client: opts.client } : {},
    );
  };
}

/** Statements one queue's batcher runs at once; calls beyond wait and share the next statement. */
const MAX_IN_FLIGHT = 2;

/**
 * Group commit for enqueues on the pool: while MAX_IN_FLIGHT statements for a queue are running,
 * further calls wait and go together in the next one (one commit, one WAL flush for all of them).
 * A call made when nothing waits is sent at once, so a lone enqueue is never delayed.
 */
class EnqueueBatcher {
  #inFlight = 0;
  #waiting: { rows: EnqueueRow[]; resolve: (carried: boolean) => void; reject: (err: unknown) => void }[] =
    [];

  constructor(
    private readonly pool: pg.Pool,
    private readonly ctx: SqlContext,
    private readonly queue: string,
    private readonly notifier: QueueNotifier,
  ) {}

  /** Resolves once the rows are committed: whether the insert's round trip carried their wake-up. */
  insert(rows: EnqueueRow[]): Promise<boolean> {
    return new Promise((resolve, reject) => {
      this.#waiting.push({ rows, resolve, reject });
      this.#next();
    });
  }

  #next(): void {
    if (this.#inFlight >= MAX_IN_FLIGHT || this.#waiting.length === 0) return;
    const batch = this.#waiting.splice(0);
    this.#inFlight++;
    // The batch's round trip carries the queue's wake-up when one is due.
    const carrier = new WakeupCarrier(this.pool, this.notifier.carrying(this.queue));
    insertJobs(
      carrier.db,
      this.ctx,
      this.queue,
      batch.flatMap((b) => b.rows),
    )
      .then(
        () => {
          for (const b of batch) b.resolve(carrier.carried);
        },
        (err) => {
          for (const b of batch) b.reject(err);
        },
      )
      .finally(() => {
        this.#inFlight--;
        this.#next();
      });
  }
}

const batchers = new WeakMap<pg.Pool, Map<string, EnqueueBatcher>>();

function batcherFor(store: MessageStore, queue: string): EnqueueBatcher {
  let byKey = batchers.get(store.pool);
  if (!byKey) {
    byKey = new Map();
    batchers.set(store.pool, byKey);
  }
  const key = `${store.schema}\u0000${queue}`;
  let b = byKey.get(key);
  if (!b) {
    b = new EnqueueBatcher(
      store.pool,
      store.sqlContext,
      queue,
      queueNotifierFor(store.pool, store.sqlContext),
    );
    byKey.set(key, b);
  }
  return b;
}
