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
  /** For `transactional` subscriptions: the transaction in which the checkpoint advances. */
  client: pg.PoolClient | undefined;
  group: string;
  subscription: string;
  /** 1 on the first try, then 2, 3, ... on retries. */
  attempt: number;
  /**
   * Schedule a message for later (a saga's timeout). Returns its id, for cancelScheduled. Without
   * `message.id`, the id is derived from the handled message, so a retried handler schedules once.
   * Set by the worker.
   */
  schedule?: (stream: string, message: NewMessage, when: { at: Date } | { delay: number }) => Promise<string>;
  /** Cancel a scheduled message: true when it was pending, false when delivered or unknown. Set by the worker. */
  cancelScheduled?: (id: string) => Promise<boolean>;
}

/** What to do with a message whose type is not declared under `messages`. */
export type UnmappedTypePolicy = 'fail' | 'skip' | 'raw';

export interface SubscriptionConfig<M extends MessagesMap = MessagesMap> {
  /** Message types to receive. Default: every type declared under `messages`. */
  types?: (keyof M & string)[] | string[];
  /** Only streams of this category (prefix before the first `-`). */
  category?: string;
  /** Only this stream. */
  stream?: string;
  /** Called once per message, in stream order. Give this or `batchHandler`. */
  handler?: (message: MessageOf<M>, ctx: HandlerContext) => Promise<void> | void;
  /** Called with a batch of messages from one stream, in order. */
  batchHandler?: (messages: MessageOf<M>[], ctx: HandlerContext) => Promise<void> | void;
  /** Where a new subscription starts. Default `'beginning'`. */
  startFrom?: 'beginning' | 'end';
  /** Retries before a checkpoint is marked failed. Default 10. */
  maxRetries?: number;
  /** Exponential backoff between retries, with jitter. Default 1 s initial, 5 min max. */
  backoff?: { initialMs?: number; maxMs?: number };
  /** Messages read per claim of a stream. Default 100. */
  batchSize?: number;
  /** Run the handler in the transaction that advances the checkpoint. Default false. */
  transactional?: boolean;
  /** Messages of a type not declared under `messages`. Default `'fail'`. */
  onUnmappedType?: UnmappedTypePolicy;
}

export interface GroupConfig<M extends MessagesMap = MessagesMap> {
  subscriptions: Record<string, SubscriptionConfig<M>>;
  /** Checkpoint consumers per worker process. Default 4. */
  concurrency?: number;
}

export interface DatabaseConfig {
  /** postgres:// URL. Overridden by --database-url and DATABASE_URL. */
  url?: string;
  /** Schema holding beckett's tables. Default `beckett`. */
  schema?: string;
  /** Named prepared statements; turn off behind PgBouncer in transaction mode. Default true. */
  preparedStatements?: boolean;
  /** Connections per process. Default 10. */
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
  handler: SubscriptionConfig['handler'];
  batchHandler: SubscriptionConfig['batchHandler'];
  startFrom: 'beginning' | 'end';
  maxRetries: number;
  backoff: { initialMs: number; maxMs: number };
  batchSize: number;
  transactional: boolean;
  onUnmappedType: UnmappedTypePolicy;
}

export interface ResolvedGroup {
  name: string;
  concurrency: number;
  subscriptions: Map<string, ResolvedSubscription>;
}

/** The config with defaults applied and every value checked; passed first to library code. */
export interface ResolvedConfig {
  /** The file it came from, if any. */
  path: string | undefined;
  /** The folder of the config file, or the working directory. */
  projectDir: string;
  database: { url: string | undefined; schema: string; preparedStatements: boolean; poolSize: number };
  messages: Record<string, MessageDefinition>;
  groups: Map<string, ResolvedGroup>;
  /** Retention policies; no policies when the config has no `retention` key. */
  retention: ResolvedRetention;
  /** Recurring messages; empty when the config has no `recurring` key. */
  recurring: ResolvedRecurringMessage[];
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
