import type pg from 'pg';
import type { MessageStore } from '../store/messageStore.js';
import type { Metadata, NewMessage, RecordedMessage } from '../store/types.js';
import type { InferOutput, StandardSchemaV1 } from './standardSchema.js';

/**
 * A message type mapping: the TypeScript type of its data, an optional Standard Schema validator
 * (zod, valibot, ...) checked on append, and an optional upcaster applied on read.
 */
export interface MessageDefinition<Data = unknown> {
  /** Validates data on append (and gives the type when `message(schema)` is used). */
  schema?: StandardSchemaV1<unknown, Data>;
  /** Turns stored data of an older shape into the current one, on every read. */
  upcast?: (data: unknown, metadata: Metadata) => Data;
  /** Type-only marker; never set. */
  readonly __data?: Data;
}

/** Declare a message type: `message<{ orderId: string }>()` or `message(zodSchema)`. */
export function message<Data>(opts?: {
  upcast?: (data: unknown, metadata: Metadata) => Data;
}): MessageDefinition<Data>;
export function message<S extends StandardSchemaV1>(
  schema: S,
  opts?: { upcast?: (data: unknown, metadata: Metadata) => InferOutput<S> },
): MessageDefinition<InferOutput<S>>;
export function message(
  schemaOrOpts?: StandardSchemaV1 | { upcast?: (data: unknown, metadata: Metadata) => unknown },
  opts?: { upcast?: (data: unknown, metadata: Metadata) => unknown },
): MessageDefinition {
  if (schemaOrOpts && '~standard' in schemaOrOpts) {
    return { schema: schemaOrOpts, ...(opts?.upcast ? { upcast: opts.upcast } : {}) };
  }
  return schemaOrOpts?.upcast ? { upcast: schemaOrOpts.upcast } : {};
}

export type MessagesMap = Record<string, MessageDefinition<any>>;

type DataOf<D> = D extends MessageDefinition<infer T> ? T : unknown;

/** The union of recorded messages declared in a config, discriminated by `type`. */
export type MessageOf<M extends MessagesMap> = {
  [K in keyof M & string]: RecordedMessage<K, DataOf<M[K]>>;
}[keyof M & string];

/** What a handler receives besides the message. */
export interface HandlerContext {
  /** Appends from here carry the handled message's correlation id and its id as causation. */
  store: MessageStore;
  /** Aborted when the worker shuts down: stop long work early. */
  signal: AbortSignal;
  /**
   * For `transactional` subscriptions: the transaction in which the checkpoint advances (typed as
   * always set in a subscription declared with `transactional: true`). Undefined otherwise.
   */
  client: pg.PoolClient | undefined;
  group: string;
  subscription: string;
  /** 1 on the first try, then 2, 3, ... on retries. */
  attempt: number;
  /**
   * Schedule a message for later (a saga's timeout). Returns its id, for cancelScheduled. Without
   * `message.id`, the id is derived from the handled message, so a retried handler schedules once.
   */
  schedule: (stream: string, message: NewMessage, when: { at: Date } | { delay: number }) => Promise<string>;
  /** Cancel a scheduled message: true when it was pending, false when delivered or unknown. */
  cancelScheduled: (id: string) => Promise<boolean>;
  /**
   * Enqueue a job (see `queues`); returns its id. In a transactional subscription it commits with
   * the checkpoint. Without `opts.id`, the id is derived from the handled message, so a retried
   * handler enqueues once (while the first job is not done yet).
   */
  enqueue: (
    queue: string,
    message: { type: string; data: unknown; metadata?: Metadata },
    opts?: { delay?: number; key?: string; id?: string },
  ) => Promise<string>;
}

/** The context of a `transactional: true` subscription's handler: `client` is always set. */
export interface TransactionalHandlerContext extends HandlerContext {
  client: pg.PoolClient;
}

/** The context as the worker builds it, before scheduling is added (instrumentSubscription). */
export type WorkerHandlerContext = Omit<HandlerContext, 'schedule' | 'cancelScheduled' | 'enqueue'>;

/** What to do with a message whose type is not declared under `messages`. */
export type UnmappedTypePolicy = 'fail' | 'skip' | 'raw';

/** What every subscription can set, whatever its `transactional` mode. */
export interface SubscriptionOptions<M extends MessagesMap = MessagesMap> {
  /** Message types to receive. Default: every type declared under `messages`. */
  types?: (keyof M & string)[] | string[];
  /** Only streams of this category (prefix before the first `-`). */
  category?: string;
  /** Only this stream. */
  stream?: string;
  /** Where a new subscription starts. Default `'beginning'`. */
  startFrom?: 'beginning' | 'end';
  /** Retries before a checkpoint is marked failed. Default 10. */
  maxRetries?: number;
  /** Exponential backoff between retries, with jitter. Default 1 s initial, 5 min max. */
  backoff?: { initialMs?: number; maxMs?: number };
  /** Messages read per claim of a stream. Default 100. */
  batchSize?: number;
  /** Messages of a type not declared under `messages`. Default `'fail'`. */
  onUnmappedType?: UnmappedTypePolicy;
  /**
   * Longest a handler call (one message, or one batch for `batchHandler`) may run: milliseconds or
   * a duration such as `'30s'`, `'5m'`. At the timeout `ctx.signal` aborts, the attempt counts as a
   * failure (retried with backoff), the stream's lease is released and, for a transactional
   * subscription, its transaction is ended on the server; the call is abandoned and nothing it does
   * afterwards is recorded (a non-transactional handler's own side effects are its own: honour
   * `ctx.signal`). Default: the group's `handlerTimeout`, else `'30s'`.
   */
  handlerTimeout?: number | string;
}

/** A subscription whose handler runs in the transaction that advances its checkpoint. */
export interface TransactionalSubscriptionConfig<M extends MessagesMap = MessagesMap>
  extends SubscriptionOptions<M> {
  /** Run the handler in the transaction that advances the checkpoint (`ctx.client`). */
  transactional: true;
  /** Called once per message, in stream order. Give this or `batchHandler`. */
  handler?: (message: MessageOf<M>, ctx: TransactionalHandlerContext) => Promise<void> | void;
  /** Called with a batch of messages from one stream, in order. */
  batchHandler?: (messages: MessageOf<M>[], ctx: TransactionalHandlerContext) => Promise<void> | void;
}

/** A subscription whose handler runs outside the checkpoint's transaction (the default). */
export interface PlainSubscriptionConfig<M extends MessagesMap = MessagesMap> extends SubscriptionOptions<M> {
  /** Run the handler in the transaction that advances the checkpoint. Default false. */
  transactional?: false;
  /** Called once per message, in stream order. Give this or `batchHandler`. */
  handler?: (message: MessageOf<M>, ctx: HandlerContext) => Promise<void> | void;
  /** Called with a batch of messages from one stream, in order. */
  batchHandler?: (messages: MessageOf<M>[], ctx: HandlerContext) => Promise<void> | void;
}

/**
 * A subscription: its handler's context is typed by `transactional` (`ctx.client` is set when it
 * is `true`).
 */
export type SubscriptionConfig<M extends MessagesMap = MessagesMap> =
  | TransactionalSubscriptionConfig<M>
  | PlainSubscriptionConfig<M>;

export interface GroupConfig<M extends MessagesMap = MessagesMap> {
  /** The group's subscriptions (may be left out when the group only serves `queues`). */
  subscriptions?: Record<string, SubscriptionConfig<M>>;
  /** Queues (declared under the top-level `queues`) that `es worker --group` also serves. */
  queues?: string[];
  /** Checkpoint consumers per worker process. Default 4. */
  concurrency?: number;
  /**
   * Default `handlerTimeout` of the group's subscriptions (milliseconds or a duration such as
   * `'30s'`). Default `'30s'`: a handler that takes longer is presumed stuck.
   */
  handlerTimeout?: number | string;
}

export interface DatabaseConfig {
  /** postgres:// URL. Overridden by --database-url and DATABASE_URL. */
  url?: string;
  /** Schema holding beckett's tables. Default `beckett`. */
  schema?: string;
  /**
   * A streaming replica (hot standby) for reads: `es tail`, `es read`, the dashboard's message
   * pages, `es worker`'s catch-up batches (only those the replica has replayed), and the store's
   * readStream, readLog and readCategory when the store is given a `readPool`. Appends, claims,
   * conditions and decisions stay on `url`. Replica lag applies: a read just after an append may not see it yet
   * (use the primary for read-your-writes). Overridden by --read-url and BECKETT_READ_URL.
   */
  readUrl?: string;
  /**
   * A direct connection to the primary for LISTEN, when `url` goes through PgBouncer in transaction
   * mode (a LISTEN there stays on whichever server connection ran it). Setting it also makes
   * `preparedStatements` default to false, and sends no session settings at connect (PgBouncer
   * refuses the `options` startup parameter). Overridden by BECKETT_LISTEN_URL.
   */
  listenUrl?: string;
  /**
   * Named prepared statements. Default true, or false when `listenUrl` is set (a pooler in front):
   * PgBouncer keeps named statements only from 1.21 with `max_prepared_statements` > 0; set true then.
   */
  preparedStatements?: boolean;
  /**
   * Connections per process. Default: for `es worker`, the group's concurrency x 2 + 4 (a consumer's
   * transactional handler holds one, its lease extensions and completions need others, and the
   * reader, the notifier and the heartbeat one each); for other commands a few, as they need.
   */
  poolSize?: number;
}

/**
 * A retention policy: which old messages `es retention apply` deletes. Give `category` or `stream`,
 * and `maxAge`, `maxCount` or both. The newest message of a stream is always kept, so the stream's
 * version (and optimistic concurrency on it) survives.
 */
export interface RetentionPolicy {
  /** Shown in reports. Default: the category or stream pattern. */
  name?: string;
  /** Streams of this category (the stream name's prefix before the first `-`). */
  category?: string;
  /** A stream name pattern; `*` matches any characters, e.g. `session-*` or `tmp-*-draft`. */
  stream?: string;
  /** Delete messages older than this: milliseconds, or a duration such as `'90d'`, `'12h'`, `'30m'`. */
  maxAge?: number | string;
  /** Keep only the newest N messages of each matching stream (N >= 1). */
  maxCount?: number;
}

export interface RetentionConfig {
  policies: RetentionPolicy[];
  /** Messages deleted per statement, so no delete holds locks for long. Default 1000. */
  batchSize?: number;
  /** Workers apply the policies this often (ms or a duration such as `'1h'`). Default: never. */
  interval?: number | string;
}

export interface BeckettConfig<M extends MessagesMap = MessagesMap> {
  database?: DatabaseConfig;
  /** Message type mappings: name -> data type, validator, upcaster. */
  messages?: M;
  /** Subscription groups, run by `es worker --group NAME`. */
  groups?: Record<string, GroupConfig<M>>;
  /** Retention policies, applied by `es retention apply` (and by workers when `interval` is set). */
  retention?: RetentionConfig;
  /** Messages appended on a cron schedule by the workers (each occurrence once, across all workers). */
  recurring?: RecurringMessageConfig[];
  /** Your application's own migrations (projection tables, ...), applied by `es migrate`. */
  migrations?: AppMigrationsConfig;
  /** Job queues and their consumers, run by `es worker --queue NAME` or a group's `queues`. */
  queues?: Record<string, QueueConfig<M>>;
}

/**
 * Your application's migrations: `es migrate` applies the folder's `NUMBER_name.sql` files after
 * beckett's own, in the same advisory lock, in order, each in its own transaction (write no
 * BEGIN/COMMIT in them), records each with its checksum in `<schema>.app_migrations`, and refuses
 * an applied file that changed. `es dump-migrations` includes them.
 */
export interface AppMigrationsConfig {
  /** The folder, relative to the config file, e.g. `'./migrations'`. */
  folder: string;
}

/** A job as its queue's handler receives it. */
export interface Job<Type extends string = string, Data = unknown> {
  id: string;
  queue: string;
  type: Type;
  data: Data;
  metadata: Metadata;
  /** The ordering key it was enqueued with, if any. */
  key: string | undefined;
  /** 1 on the first delivery, then 2, 3, ... (maxDeliveries at most). */
  deliveries: number;
  enqueuedAt: Date;
  /** Errors of the earlier deliveries, oldest first. */
  errors: JobErrorEntry[];
}

/** One failed delivery in a job's error history. */
export interface JobErrorEntry {
  delivery: number;
  at: string;
  name: string;
  message: string;
  stack?: string;
  worker?: string;
}

/** The union of jobs typed by a config's messages, discriminated by `type`. */
export type JobOf<M extends MessagesMap> = {
  [K in keyof M & string]: Job<K, DataOf<M[K]>>;
}[keyof M & string];

/** What a queue handler receives besides the job. */
export interface JobContext {
  queue: string;
  /**
   * Aborted when the job's visibility was lost (another worker may have it now: stop, nothing you
   * do will ack it) and when the worker is forced to stop.
   */
  signal: AbortSignal;
  /** Appends and enqueues from here carry the job's correlation id and its id as causation. */
  store: MessageStore;
  /** Enqueue a follow-up job (ids derived from this job: a retried handler enqueues it once). */
  enqueue: (
    queue: string,
    message: { type: string; data: unknown; metadata?: Metadata },
    opts?: { delay?: number; key?: string; id?: string },
  ) => Promise<string>;
}

/** A queue's consumer: `queues: { emails: { handler, concurrency: 10 } }`. */
export interface QueueConfig<M extends MessagesMap = MessagesMap> {
  /** Called once per delivery. Returning acks (deletes) the job; throwing retries it after `backoff`. */
  handler: (job: JobOf<M>, ctx: JobContext) => Promise<void> | void;
  /** Jobs handled at once per worker process. Default 10. */
  concurrency?: number;
  /**
   * How long a delivered job stays invisible to other workers without being acked: milliseconds or a
   * duration such as `'30s'`. Extended every third of it while the handler runs; a worker that
   * dies (or cannot reach the database) loses it, and another worker takes the job. Default `'30s'`.
   */
  visibilityTimeout?: number | string;
  /** Deliveries before a job moves to the dead letters (`es queue dead`). Default 5. */
  maxDeliveries?: number;
  /** Exponential backoff between deliveries, with jitter. Default 1 s initial, 5 min max. */
  backoff?: { initialMs?: number; maxMs?: number };
  /** Jobs taken per dequeue. Default: the concurrency. */
  batchSize?: number;
  /**
   * Longest a handler may run on one delivery: milliseconds or a duration such as `'2m'`. Past it
   * `ctx.signal` aborts and the delivery fails with a HandlerTimeoutError (it counts towards
   * `maxDeliveries`, and retries after `backoff`); whatever the handler does later is ignored.
   * Default `'30s'` (as subscriptions).
   */
  handlerTimeout?: number | string;
}

export interface ResolvedQueue {
  name: string;
  handler: (job: Job, ctx: JobContext) => Promise<void> | void;
  concurrency: number;
  visibilityTimeoutMs: number;
  maxDeliveries: number;
  backoff: { initialMs: number; maxMs: number };
  batchSize: number;
  /** Longest a handler may run on one delivery, in ms (see QueueConfig.handlerTimeout). */
  handlerTimeoutMs: number;
}

/** A message appended on a cron schedule, e.g. `{ name: 'nightly-report', cron: '0 3 * * *', ... }`. */
export interface RecurringMessageConfig {
  /** Unique name (letters, digits, "_", "-", "."): one database row and one schedule per name. */
  name: string;
  /** Cron expression, 5 fields (minute precision) or 6 (seconds first), as croner reads it. */
  cron: string;
  /** IANA time zone the expression is read in, e.g. `Europe/Berlin`. Default `UTC`. */
  timezone?: string;
  /** Stream each occurrence is appended to. */
  stream: string;
  message: { type: string; data: unknown };
}

export interface ResolvedRecurringMessage {
  name: string;
  cron: string;
  timezone: string;
  stream: string;
  message: { type: string; data: unknown };
}

/** Identity function that gives your config its types. */
export function defineConfig<const M extends MessagesMap>(config: BeckettConfig<M>): BeckettConfig<M> {
  return config;
}

export interface ResolvedSubscription {
  group: string;
  name: string;
  types: string[] | undefined;
  category: string | undefined;
  stream: string | undefined;
  handler: ((message: MessageOf<MessagesMap>, ctx: WorkerHandlerContext) => Promise<void> | void) | undefined;
  batchHandler:
    | ((messages: MessageOf<MessagesMap>[], ctx: WorkerHandlerContext) => Promise<void> | void)
    | undefined;
  startFrom: 'beginning' | 'end';
  maxRetries: number;
  backoff: { initialMs: number; maxMs: number };
  batchSize: number;
  transactional: boolean;
  onUnmappedType: UnmappedTypePolicy;
  /** Longest a handler call may run, in ms (see SubscriptionConfig.handlerTimeout). */
  handlerTimeoutMs: number;
}

export interface ResolvedGroup {
  name: string;
  concurrency: number;
  subscriptions: Map<string, ResolvedSubscription>;
  /** Queues the group's workers serve (names under `queues`). */
  queues: string[];
}

/** The config with defaults applied and every value checked; passed first to library code. */
export interface ResolvedConfig {
  /** The file it came from, if any. */
  path: string | undefined;
  /** The folder of the config file, or the working directory. */
  projectDir: string;
  database: {
    url: string | undefined;
    readUrl: string | undefined;
    listenUrl: string | undefined;
    schema: string;
    preparedStatements: boolean;
    /** As configured; undefined when not set (each command picks its own size). */
    poolSize: number | undefined;
  };
  messages: Record<string, MessageDefinition>;
  groups: Map<string, ResolvedGroup>;
  /** Retention policies; no policies when the config has no `retention` key. */
  retention: ResolvedRetention;
  /** Recurring messages; empty when the config has no `recurring` key. */
  recurring: ResolvedRecurringMessage[];
  /** Your application's migrations folder (absolute), when the config names one. */
  migrations?: { folder: string };
  /** Queue consumers; empty when the config has no `queues` key. */
  queues: Map<string, ResolvedQueue>;
}

export interface ResolvedRetentionPolicy {
  name: string;
  category: string | undefined;
  /** A stream name pattern (`*` wildcards). */
  stream: string | undefined;
  maxAgeMs: number | undefined;
  maxCount: number | undefined;
}

export interface ResolvedRetention {
  policies: ResolvedRetentionPolicy[];
  batchSize: number;
  intervalMs: number | undefined;
}
