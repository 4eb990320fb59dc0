import type pg from 'pg';
import type { MessageDefinition } from '../config/types.js';
import { messagesLockKeys, takeLocksSql } from '../consistency/lockKeys.js';
import { developmentDatabaseUrl } from '../db/developmentDatabase.js';
import { assertSafeSchemaName, escapeIdentifier } from '../db/identifier.js';
import { createPool, createPoolFindingUrl } from '../db/pool.js';
import { inTransaction, type Queryable, type SqlContext, statement } from '../db/queryable.js';
import { toBeckettError } from '../db/toBeckettError.js';
import { InvalidInputError, StoreClosedError, WrongExpectedVersionError } from '../errors.js';
import { type EnqueueOptions, enqueue, type JobMessage } from '../queues/enqueue.js';
import { Attr, SpanKind, withSpan } from '../telemetry/tracing.js';
import { assertCategory, assertStreamName } from '../validation/names.js';
import {
  assertInteger,
  assertOptions,
  assertReadLogOptions,
  assertReadStreamOptions,
} from '../validation/options.js';
import { quoteValue } from '../validation/quoteValue.js';
import { appendToStream, type PreparedMessage, UNKNOWN_VERSION } from './appendToStream.js';
import { upcast } from './messageTypes.js';
import { MessageWriter } from './messageWriter.js';
import { Notifier, WakeupCarrier } from './notifications.js';
import { assertDistinctIds, prepareMessageList } from './prepareMessage.js';
import { readCategory, readLog } from './readLog.js';
import { readStream, streamVersion } from './readStream.js';
import { type SentAppend, settleFailedWrite } from './storedAppends.js';
import type {
  AppendResult,
  ExpectedVersion,
  Metadata,
  NewMessage,
  ReadLogOptions,
  ReadLogResult,
  ReadStreamOptions,
  RecordedMessage,
} from './types.js';

export interface MessageStoreOptions {
  /**
   * A pool you own (it stays open on close()). Without a pool and a `connectionString`, the store
   * uses `DATABASE_URL`, else (outside NODE_ENV=production) the project's embedded PostgreSQL,
   * the same server `es` uses, started on the first query if it is not running.
   */
  pool?: pg.Pool;
  connectionString?: string;
  /**
   * Where the embedded server lives (`<projectDir>/.beckett`) when no URL is given. Default: the
   * folder of the nearest beckett config file, as `es` finds it, else the working directory.
   */
  projectDir?: string;
  /** Default `beckett`. */
  schema?: string;
  /** Message type mappings (validators on append, upcasters on read). */
  messages?: Record<string, MessageDefinition>;
  /** Default true. Turn off behind PgBouncer in transaction mode. */
  preparedStatements?: boolean;
  /** Connections when the store creates its pool. Default 10. */
  poolSize?: number;
  /**
   * A pool on a streaming replica (hot standby) for the reads of `store.replica`. Yours: it stays
   * open on close(). Without it, `store.replica` reads from the primary.
   */
  readPool?: pg.Pool;
}

export interface AppendOptions {
  /** Default `'any'`. */
  expectedVersion?: ExpectedVersion;
}

export interface StreamAppend {
  stream: string;
  messages: NewMessage | NewMessage[];
  expectedVersion?: ExpectedVersion;
}

interface Shared {
  pool: pg.Pool;
  readPool: pg.Pool | undefined;
  ownsPool: boolean;
  ctx: SqlContext;
  defs: Record<string, MessageDefinition>;
  notifier: Notifier;
  writer: MessageWriter;
  closed: boolean;
  /** Writes running now (track()); close() waits for them. */
  writes: number;
  idle: (() => void)[];
}

export { assertStreamName };

/** One stream's part of a multi-stream append, checked and prepared. */
export interface PreparedStreamAppend {
  stream: string;
  expected: ExpectedVersion;
  messages: PreparedMessage[];
}

/**
 * The rules of a multi-stream append, shared by every store: valid, distinct stream names, valid
 * expected versions (default 'any'), prepared messages; sorted by stream name, the order in which
 * streams are written (and locked).
 */
export async function prepareStreamAppends(
  appends: StreamAppend[],
  prepare: (messages: NewMessage[]) => Promise<PreparedMessage[]>,
): Promise<PreparedStreamAppend[]> {
  const prepared: PreparedStreamAppend[] = [];
  const seen = new Set<string>();
  for (const a of appends) {
    assertStreamName(a.stream);
    if (seen.has(a.stream))
      throw new InvalidInputError(
        `Stream "${a.stream}" appears twice in one multi-stream append: merge its messages.`,
      );
    seen.add(a.stream);
    const expected = a.expectedVersion ?? 'any';
    assertExpectedVersion(expected);
    prepared.push({
      stream: a.stream,
      expected,
      messages: await prepare(Array.isArray(a.messages) ? a.messages : [a.messages]),
    });
  }
  if (prepared.length > 1) assertDistinctIds(prepared.flatMap((p) => p.messages.map((m) => m.id)));
  return prepared.sort((x, y) => (x.stream < y.stream ? -1 : x.stream > y.stream ? 1 : 0));
}

/** Throws InvalidInputError for a stream name the store would refuse. */
export function checkStreamName(stream: string): void {
  assertStreamName(stream);
}

export function assertExpectedVersion(v: unknown): asserts v is ExpectedVersion {
  if (v === 'any' || v === 'no_stream' || v === 'stream_exists') return;
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return;
  throw new InvalidInputError(
    `Invalid expected version ${quoteValue(v)}.`,
    'Use "any", "no_stream", "stream_exists" or a stream version (an integer >= 0).',
  );
}

/**
 * The message store: append with optimistic concurrency, read streams, categories and the
 * gap-safe log. Create one per process with createMessageStore() and share it.
 */
export class MessageStore {
  readonly #shared: Shared;
  /** Set when bound to a caller's transaction: no BEGIN/COMMIT, no notification (caller commits). */
  readonly #client: pg.PoolClient | undefined;
  readonly #inherited: Metadata | undefined;
  /** Reads go to the read pool (see `replica`). */
  readonly #onReplica: boolean;

  /** @internal use createMessageStore() */
  constructor(shared: Shared, client?: pg.PoolClient, inherited?: Metadata, onReplica = false) {
    this.#shared = shared;
    this.#client = client;
    this.#inherited = inherited;
    this.#onReplica = onReplica && !client;
  }

  /**
   * The same store with readStream, streamVersion, readCategory and readAll on the read replica
   * (the `readPool` option), and appends on the primary as ever. The replica lags: what an append
   * wrote may not be there yet, so read your own writes, and read for decisions, from the store
   * itself. readCategory and readAll stay gap-safe on a hot standby (its snapshots follow the
   * primary's running transactions). Without a read pool it is the store itself.
   */
  get replica(): MessageStore {
    if (this.#onReplica || !this.#shared.readPool || this.#client) return this;
    return new MessageStore(this.#shared, undefined, this.#inherited, true);
  }

  get pool(): pg.Pool {
    return this.#shared.pool;
  }

  get schema(): string {
    return this.#shared.ctx.schema;
  }

  /** @internal SQL context for library modules. */
  get sqlContext(): SqlContext {
    return this.#shared.ctx;
  }

  /**
   * @internal The caller's client when this store is bound to a transaction (withTransaction, a
   * transactional handler's ctx.store): every write of the store runs on it, never on the pool.
   */
  get transactionClient(): pg.PoolClient | undefined {
    return this.#client;
  }

  /** @internal The store's writer (its group commits). */
  get writer(): MessageWriter {
    return this.#shared.writer;
  }

  /**
   * @internal Run one write of this store: refused (StoreClosedError) after close(), which waits
   * for every write started before it.
   */
  async track<T>(write: () => Promise<T>): Promise<T> {
    const shared = this.#shared;
    if (shared.closed) throw new StoreClosedError();
    shared.writes++;
    try {
      return await write();
    } finally {
      if (--shared.writes === 0) for (const idle of shared.idle.splice(0)) idle();
    }
  }

  get messageDefinitions(): Record<string, MessageDefinition> {
    return this.#shared.defs;
  }

  get #db(): Queryable {
    return this.#client ?? this.#shared.pool;
  }

  /** Where reads go: the caller's transaction, the replica for `replica`, else the primary. */
  get #reads(): Queryable {
    return this.#client ?? (this.#onReplica ? this.#shared.readPool : undefined) ?? this.#shared.pool;
  }

  /** A store whose appends run on `client`, inside the caller's transaction. */
  withTransaction(client: pg.PoolClient): MessageStore {
    return new MessageStore(this.#shared, client, this.#inherited);
  }

  /**
   * A store whose appends inherit correlation and causation from `cause`: the correlation id is
   * carried over, the causation id is the cause's id.
   */
  causedBy(cause: Pick<RecordedMessage, 'id' | 'metadata'>): MessageStore {
    return new MessageStore(
      this.#shared,
      this.#client,
      { correlationId: cause.metadata.correlationId ?? cause.id, causationId: cause.id },
      this.#onReplica,
    );
  }

  /**
   * Appends with an exact expected version take no lock (migration 0006), so a lost race for a
   * position surfaces as a unique violation, reported with an unknown actual version. An append
   * expecting "any" or "stream_exists" that collides with one of them is simply retried; an exact
   * one fails with the actual version looked up. Inside a caller's transaction nothing can be
   * retried or read after the error: it is rethrown as is.
   */
  async #settleRace<T>(
    attempt: () => Promise<T>,
    expectedOf: (stream: string) => ExpectedVersion,
  ): Promise<T> {
    for (let tries = 1; ; tries++) {
      try {
        return await attempt();
      } catch (err) {
        if (!(err instanceof WrongExpectedVersionError) || err.actual !== UNKNOWN_VERSION || this.#client)
          throw err;
        const expected = expectedOf(err.stream);
        if ((expected === 'any' || expected === 'stream_exists') && tries < 10) continue;
        const actual = await streamVersion(this.#shared.pool, this.#shared.ctx, err.stream);
        throw new WrongExpectedVersionError(err.stream, expected, actual);
      }
    }
  }

  /**
   * Run a write; if it fails on the store's pool, settle it (storedAppends.ts): a retry of a
   * committed append returns the original result, a lost connection is AppendOutcomeUnknownError.
   * Inside a caller's transaction, errors are the caller's to handle (nothing can be read after one).
   */
  async #idempotent<T>(
    appends: SentAppend[],
    attempt: () => Promise<T>,
    fromStored: (stored: Map<string, AppendResult>) => T,
  ): Promise<T> {
    try {
      return await attempt();
    } catch (err) {
      if (this.#client) throw err;
      return fromStored(await settleFailedWrite(this.#shared.pool, this.#shared.ctx, appends, err));
    }
  }

  /**
   * @internal Validate and complete messages for writing (ids, schema, metadata inherited by this
   * store); used by every write path so a message is refused the same way everywhere.
   */
  async prepareMessages(messages: NewMessage[]): Promise<PreparedMessage[]> {
    if (messages.length === 0) throw new InvalidInputError('Nothing to append: the message list is empty.');
    return prepareMessageList(messages, this.#shared.defs, this.#inherited);
  }

  /**
   * Append one or more messages to a stream. Throws WrongExpectedVersionError (and writes nothing)
   * when the stream's version does not match `expectedVersion`.
   */
  append(
    stream: string,
    messages: NewMessage | NewMessage[],
    opts: AppendOptions = {},
  ): Promise<AppendResult> {
    return this.track(() => this.#append(stream, messages, opts));
  }

  async #append(
    stream: string,
    messages: NewMessage | NewMessage[],
    opts: AppendOptions,
  ): Promise<AppendResult> {
    assertStreamName(stream);
    const expected = opts.expectedVersion ?? 'any';
    assertExpectedVersion(expected);
    const list = Array.isArray(messages) ? messages : [messages];
    return withSpan(
      `${stream} append`,
      { kind: SpanKind.PRODUCER, attributes: spanAttributes('send', stream, list.length) },
      async () => {
        const prepared = await this.prepareMessages(list);
        const sent: SentAppend = {
          stream,
          expected,
          ids: prepared.map((m) => m.id),
          givenIds: list.some((m) => m?.id !== undefined),
        };
        // On the pool, the append's round trip carries the wake-up when one is due.
        const carrier = this.#client
          ? undefined
          : new WakeupCarrier(this.#shared.pool, this.#shared.notifier);
        const result = await this.#idempotent(
          [sent],
          () =>
            this.#settleRace(
              // On the pool, single exact appends are group-committed (appendBatcher.ts); inside a
              // caller's transaction they run on its client.
              () =>
                appendToStream(
                  carrier?.db ?? this.#db,
                  this.#shared.ctx,
                  stream,
                  expected,
                  prepared,
                  this.#client ? undefined : this.#shared.writer.plain,
                  carrier,
                ),
              () => expected,
            ),
          (stored) => {
            const { streamVersion, globalPosition } = stored.get(stream)!;
            return { streamVersion, globalPosition };
          },
        );
        if (carrier && !carrier.carried) this.#shared.notifier.notify();
        return result;
      },
    );
  }

  /**
   * Append to several streams atomically: every stream's expected version must match, or nothing
   * is written. Streams are locked in name order, so concurrent multi-stream appends cannot deadlock.
   */
  appendMultiple(appends: StreamAppend[]): Promise<Map<string, AppendResult>> {
    return this.track(() => this.#appendMultipleSpan(appends));
  }

  async #appendMultipleSpan(appends: StreamAppend[]): Promise<Map<string, AppendResult>> {
    if (appends.length === 0) throw new InvalidInputError('Nothing to append: no streams given.');
    return withSpan(
      'append multiple',
      { kind: SpanKind.PRODUCER, attributes: spanAttributes('send', undefined, appends.length) },
      () => this.#appendMultiple(appends),
    );
  }

  async #appendMultiple(appends: StreamAppend[]): Promise<Map<string, AppendResult>> {
    const prepared = await prepareStreamAppends(appends, (m) => this.prepareMessages(m));
    const ctx = this.#shared.ctx;
    const keys = messagesLockKeys(prepared.flatMap((p) => p.messages));
    const run = async (db: Queryable) => {
      // Every stream's lock keys at once, in the one order, before the first insert: taken stream
      // by stream, they could deadlock with a conditional append holding a later one.
      await db.query(statement(ctx, 'multi_locks', `SELECT ${takeLocksSql(ctx.s, '$1::text[]')}`, [keys]));
      const results = new Map<string, AppendResult>();
      for (const p of prepared)
        results.set(p.stream, await appendToStream(db, this.#shared.ctx, p.stream, p.expected, p.messages));
      return results;
    };
    if (this.#client) return run(this.#client);
    const expectedOf = (stream: string) => prepared.find((p) => p.stream === stream)?.expected ?? 'any';
    const results = await this.#idempotent(
      prepared.map((p) => ({
        stream: p.stream,
        expected: p.expected,
        ids: p.messages.map((m) => m.id),
        givenIds: appends.some((a) =>
          (Array.isArray(a.messages) ? a.messages : [a.messages]).some((m) => m?.id !== undefined),
        ),
      })),
      () => this.#settleRace(() => inTransaction(this.#shared.pool, run), expectedOf),
      (stored) =>
        new Map(
          [...stored].map(([stream, r]) => [
            stream,
            { streamVersion: r.streamVersion, globalPosition: r.globalPosition },
          ]),
        ),
    );
    this.#shared.notifier.notify();
    return results;
  }

  /** Messages of one stream in order (or reverse with direction: 'backward'). */
  async readStream(stream: string, opts: ReadStreamOptions = {}): Promise<RecordedMessage[]> {
    assertStreamName(stream);
    assertReadStreamOptions(opts);
    return withSpan(
      `${stream} read`,
      { kind: SpanKind.CLIENT, attributes: spanAttributes('receive', stream) },
      async () => upcast(this.#shared.defs, await readStream(this.#reads, this.#shared.ctx, stream, opts)),
    );
  }

  /** The stream's version (last position; 0 when it does not exist). */
  async streamVersion(stream: string): Promise<number> {
    assertStreamName(stream);
    return streamVersion(this.#reads, this.#shared.ctx, stream);
  }

  /** A category's messages in log order, gap-safe. */
  async readCategory(category: string, opts: ReadLogOptions = {}): Promise<ReadLogResult> {
    assertCategory(category);
    assertReadLogOptions(opts, 'readCategory');
    return withSpan(
      `${category} read`,
      { kind: SpanKind.CLIENT, attributes: { ...spanAttributes('receive'), [Attr.category]: category } },
      async () => {
        const r = await readCategory(this.#reads, this.#shared.ctx, category, opts);
        upcast(this.#shared.defs, r.messages);
        return r;
      },
    );
  }

  /** The whole log, gap-safe: what this returns can never be preceded by a later commit. */
  async readAll(opts: ReadLogOptions = {}): Promise<ReadLogResult> {
    assertReadLogOptions(opts, 'readAll');
    return withSpan(
      'log read',
      { kind: SpanKind.CLIENT, attributes: spanAttributes('receive') },
      async () => {
        const r = await readLog(this.#reads, this.#shared.ctx, opts);
        upcast(this.#shared.defs, r.messages);
        return r;
      },
    );
  }

  /**
   * Enqueue a job to `queue` (see the `queues` config); returns its id. On a store bound to your
   * transaction (withTransaction, a transactional handler's ctx.store) the job exists only if that
   * transaction commits, and workers are woken once it has. Idempotent by `opts.id`.
   */
  enqueue(queue: string, message: JobMessage, opts?: EnqueueOptions): Promise<string> {
    return enqueue(this, queue, message, opts, this.#client ? { client: this.#client } : {});
  }

  /** Send a (coalesced) wake-up to subscribers now; for appends made in your own transaction, after commit. */
  notify(): void {
    this.#shared.notifier.notify();
  }

  /**
   * Settle every append taken, refuse new ones (StoreClosedError), announce what was written, and
   * close the pool if the store created it. Idempotent.
   */
  async close(): Promise<void> {
    const shared = this.#shared;
    shared.closed = true;
    if (shared.writes > 0) await new Promise<void>((resolve) => shared.idle.push(resolve));
    await shared.writer.close();
    // Announce appends still waiting for their wake-up, then stop.
    await this.#shared.notifier.flush();
    this.#shared.notifier.close();
    if (this.#shared.ownsPool) {
      this.#shared.ownsPool = false;
      await this.#shared.pool.end();
    }
  }
}

/*
 * Errors leave the store's public methods through the one mapping (src/db/toBeckettError.ts):
 * a caller sees DatabaseUnreachableError, NotMigratedError, InvalidInputError or
 * DatabaseQueryError (SQLSTATE kept, and sqlStateOf still reads it), never a raw driver error.
 */
for (const name of [
  'append',
  'appendMultiple',
  'readStream',
  'streamVersion',
  'readCategory',
  'readAll',
] as const) {
  const original = MessageStore.prototype[name] as (...args: unknown[]) => Promise<unknown>;
  Object.defineProperty(MessageStore.prototype, name, {
    configurable: true,
    writable: true,
    value: async function (this: MessageStore, ...args: unknown[]) {
      try {
        return await original.apply(this, args);
      } catch (err) {
        throw toBeckettError(err, { schema: this.schema });
      }
    },
  });
}

function spanAttributes(operation: string, stream?: string, count?: number): Record<string, string | number> {
  return {
    [Attr.system]: 'beckett',
    [Attr.operation]: operation,
    ...(stream !== undefined ? { [Attr.destination]: stream } : {}),
    ...(count !== undefined ? { [Attr.batchCount]: count } : {}),
  };
}

/**
 * Create a message store on a pool you give, on a new pool from a connection string, or, with
 * neither, on `DATABASE_URL` or the project's embedded server (development only).
 */
export function createMessageStore(opts: MessageStoreOptions): MessageStore {
  assertOptions(opts, 'createMessageStore', [
    'pool',
    'connectionString',
    'schema',
    'messages',
    'preparedStatements',
    'poolSize',
    'readPool',
    'projectDir',
  ]);
  if (opts.poolSize !== undefined) assertInteger(opts.poolSize, 'poolSize', 1);
  const schema = assertSafeSchemaName(opts.schema ?? 'beckett');
  if (opts.projectDir !== undefined && (typeof opts.projectDir !== 'string' || opts.projectDir === ''))
    throw new InvalidInputError(
      `createMessageStore: projectDir must be a folder path, got ${quoteValue(opts.projectDir)}.`,
    );
  const pool =
    opts.pool ??
    (opts.connectionString !== undefined
      ? createPool(opts.connectionString, { max: opts.poolSize ?? 10 })
      : createPoolFindingUrl(
          () => developmentDatabaseUrl(opts.projectDir !== undefined ? { projectDir: opts.projectDir } : {}),
          { max: opts.poolSize ?? 10 },
        ));
  const ctx: SqlContext = { schema, s: escapeIdentifier(schema), prepared: opts.preparedStatements ?? true };
  const notifier = new Notifier(pool, ctx);
  return new MessageStore({
    pool,
    readPool: opts.readPool,
    ownsPool: !opts.pool,
    ctx,
    defs: opts.messages ?? {},
    notifier,
    writer: new MessageWriter(pool, ctx, notifier),
    closed: false,
    writes: 0,
    idle: [],
  });
}
