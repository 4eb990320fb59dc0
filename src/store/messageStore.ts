import type pg from 'pg';
import type { MessageDefinition } from '../config/types.js';
import { assertSafeSchemaName, escapeIdentifier } from '../db/identifier.js';
import { createPool } from '../db/pool.js';
import type { Queryable, SqlContext } from '../db/queryable.js';
import { InvalidInputError, WrongExpectedVersionError } from '../errors.js';
import { Attr, SpanKind, withSpan } from '../telemetry/tracing.js';
import { AppendBatcher } from './appendBatcher.js';
import { appendToStream, type PreparedMessage, UNKNOWN_VERSION } from './appendToStream.js';
import { upcast } from './messageTypes.js';
import { Notifier } from './notifications.js';
import { prepareMessage } from './prepareMessage.js';
import { readCategory, readLog } from './readLog.js';
import { readStream, streamVersion } from './readStream.js';
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
  /** A pool you own (it stays open on close()). Give this or `connectionString`. */
  pool?: pg.Pool;
  connectionString?: string;
  /** Default `beckett`. */
  schema?: string;
  /** Message type mappings (validators on append, upcasters on read). */
  messages?: Record<string, MessageDefinition>;
  /** Default true. Turn off behind PgBouncer in transaction mode. */
  preparedStatements?: boolean;
  /** Connections when the store creates its pool. Default 10. */
  poolSize?: number;
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
  ownsPool: boolean;
  ctx: SqlContext;
  defs: Record<string, MessageDefinition>;
  notifier: Notifier;
  batcher: AppendBatcher;
}

const MAX_STREAM_NAME = 500;

export function assertStreamName(stream: unknown): asserts stream is string {
  if (
    typeof stream !== 'string' ||
    stream.length === 0 ||
    stream.length > MAX_STREAM_NAME ||
    // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are exactly what is refused
    /[\s\u0000-\u001f]/.test(stream)
  ) {
    throw new InvalidInputError(
      `Invalid stream name ${JSON.stringify(stream)}: use 1-${MAX_STREAM_NAME} characters without spaces or control characters.`,
      'Stream names look like category-id, for example order-123.',
    );
  }
}

/** Throws InvalidInputError for a stream name the store would refuse. */
export function checkStreamName(stream: string): void {
  assertStreamName(stream);
}

function assertExpectedVersion(v: unknown): asserts v is ExpectedVersion {
  if (v === 'any' || v === 'no_stream' || v === 'stream_exists') return;
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0) return;
  throw new InvalidInputError(
    `Invalid expected version ${JSON.stringify(v)}.`,
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

  /** @internal use createMessageStore() */
  constructor(shared: Shared, client?: pg.PoolClient, inherited?: Metadata) {
    this.#shared = shared;
    this.#client = client;
    this.#inherited = inherited;
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

  get messageDefinitions(): Record<string, MessageDefinition> {
    return this.#shared.defs;
  }

  get #db(): Queryable {
    return this.#client ?? this.#shared.pool;
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
    return new MessageStore(this.#shared, this.#client, {
      correlationId: cause.metadata.correlationId ?? cause.id,
      causationId: cause.id,
    });
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
   * @internal Validate and complete messages for writing (ids, schema, metadata inherited by this
   * store); used by every write path so a message is refused the same way everywhere.
   */
  async prepareMessages(messages: NewMessage[]): Promise<PreparedMessage[]> {
    if (messages.length === 0) throw new InvalidInputError('Nothing to append: the message list is empty.');
    const out: PreparedMessage[] = [];
    for (const m of messages) out.push(await prepareMessage(m, this.#shared.defs, this.#inherited));
    return out;
  }

  /**
   * Append one or more messages to a stream. Throws WrongExpectedVersionError (and writes nothing)
   * when the stream's version does not match `expectedVersion`.
   */
  async append(
    stream: string,
    messages: NewMessage | NewMessage[],
    opts: AppendOptions = {},
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
        const result = await this.#settleRace(
          // On the pool, single exact appends are group-committed (appendBatcher.ts); inside a
          // caller's transaction they run on its client.
          () =>
            appendToStream(
              this.#db,
              this.#shared.ctx,
              stream,
              expected,
              prepared,
              this.#client ? undefined : this.#shared.batcher,
            ),
          () => expected,
        );
        if (!this.#client) this.#shared.notifier.notify();
        return result;
      },
    );
  }

  /**
   * Append to several streams atomically: every stream's expected version must match, or nothing
   * is written. Streams are locked in name order, so concurrent multi-stream appends cannot deadlock.
   */
  async appendMultiple(appends: StreamAppend[]): Promise<Map<string, AppendResult>> {
    if (appends.length === 0) throw new InvalidInputError('Nothing to append: no streams given.');
    return withSpan(
      'append multiple',
      { kind: SpanKind.PRODUCER, attributes: spanAttributes('send', undefined, appends.length) },
      () => this.#appendMultiple(appends),
    );
  }

  async #appendMultiple(appends: StreamAppend[]): Promise<Map<string, AppendResult>> {
    const seen = new Set<string>();
    const prepared: { stream: string; expected: ExpectedVersion; messages: PreparedMessage[] }[] = [];
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
        messages: await this.prepareMessages(Array.isArray(a.messages) ? a.messages : [a.messages]),
      });
    }
    prepared.sort((x, y) => (x.stream < y.stream ? -1 : x.stream > y.stream ? 1 : 0));
    const run = async (db: Queryable) => {
      const results = new Map<string, AppendResult>();
      for (const p of prepared)
        results.set(p.stream, await appendToStream(db, this.#shared.ctx, p.stream, p.expected, p.messages));
      return results;
    };
    if (this.#client) return run(this.#client);
    const expectedOf = (stream: string) => prepared.find((p) => p.stream === stream)?.expected ?? 'any';
    const results = await this.#settleRace(() => this.#inOwnTransaction(run), expectedOf);
    this.#shared.notifier.notify();
    return results;
  }

  async #inOwnTransaction<T>(fn: (db: Queryable) => Promise<T>): Promise<T> {
    const client = await this.#shared.pool.connect();
    try {
      await client.query('BEGIN');
      const result = await fn(client);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  }

  /** Messages of one stream in order (or reverse with direction: 'backward'). */
  async readStream(stream: string, opts: ReadStreamOptions = {}): Promise<RecordedMessage[]> {
    assertStreamName(stream);
    return withSpan(
      `${stream} read`,
      { kind: SpanKind.CLIENT, attributes: spanAttributes('receive', stream) },
      async () => upcast(this.#shared.defs, await readStream(this.#db, this.#shared.ctx, stream, opts)),
    );
  }

  /** The stream's version (last position; 0 when it does not exist). */
  async streamVersion(stream: string): Promise<number> {
    assertStreamName(stream);
    return streamVersion(this.#db, this.#shared.ctx, stream);
  }

  /** A category's messages in log order, gap-safe. */
  async readCategory(category: string, opts: ReadLogOptions = {}): Promise<ReadLogResult> {
    if (typeof category !== 'string' || category === '' || category.includes('-')) {
      throw new InvalidInputError(
        `Invalid category ${JSON.stringify(category)}: a category is the stream name's part before the first "-".`,
      );
    }
    return withSpan(
      `${category} read`,
      { kind: SpanKind.CLIENT, attributes: { ...spanAttributes('receive'), [Attr.category]: category } },
      async () => {
        const r = await readCategory(this.#db, this.#shared.ctx, category, opts);
        upcast(this.#shared.defs, r.messages);
        return r;
      },
    );
  }

  /** The whole log, gap-safe: what this returns can never be preceded by a later commit. */
  async readAll(opts: ReadLogOptions = {}): Promise<ReadLogResult> {
    return withSpan(
      'log read',
      { kind: SpanKind.CLIENT, attributes: spanAttributes('receive') },
      async () => {
        const r = await readLog(this.#db, this.#shared.ctx, opts);
        upcast(this.#shared.defs, r.messages);
        return r;
      },
    );
  }

  /** Send a (coalesced) wake-up to subscribers now; for appends made in your own transaction, after commit. */
  notify(): void {
    this.#shared.notifier.notify();
  }

  /** Close the pool if the store created it. Idempotent. */
  async close(): Promise<void> {
    // Announce appends still waiting for their wake-up, then stop.
    await this.#shared.notifier.flush();
    this.#shared.notifier.close();
    if (this.#shared.ownsPool) {
      this.#shared.ownsPool = false;
      await this.#shared.pool.end();
    }
  }
}

function spanAttributes(operation: string, stream?: string, count?: number): Record<string, string | number> {
  return {
    [Attr.system]: 'beckett',
    [Attr.operation]: operation,
    ...(stream !== undefined ? { [Attr.destination]: stream } : {}),
    ...(count !== undefined ? { [Attr.batchCount]: count } : {}),
  };
}

/** Create a message store on a pool you give, or on a new pool from a connection string. */
export function createMessageStore(opts: MessageStoreOptions): MessageStore {
  const schema = assertSafeSchemaName(opts.schema ?? 'beckett');
  if (!opts.pool && !opts.connectionString) {
    throw new InvalidInputError('createMessageStore needs a pool or a connectionString.');
  }
  const pool = opts.pool ?? createPool(opts.connectionString!, { max: opts.poolSize ?? 10 });
  const ctx: SqlContext = { schema, s: escapeIdentifier(schema), prepared: opts.preparedStatements ?? true };
  return new MessageStore({
    pool,
    ownsPool: !opts.pool,
    ctx,
    defs: opts.messages ?? {},
    notifier: new Notifier(pool, ctx),
    batcher: new AppendBatcher(pool, ctx),
  });
}
