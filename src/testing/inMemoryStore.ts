import type { MessageDefinition } from '../config/types.js';
import {
  type AppendCondition,
  assertAppendCondition,
  type ConditionalAppendResult,
  type ConditionalStreamAppend,
} from '../consistency/conditionalAppend.js';
import type { Query } from '../consistency/query.js';
import type {
  ReadByQueryOptions,
  ReadByQueryResult,
  ReadForDecisionResult,
} from '../consistency/readByQuery.js';
import { assertQuery } from '../consistency/readByQuery.js';
import type { Snapshot } from '../consistency/snapshots.js';
import { InvalidInputError, NotFoundError, WrongExpectedVersionError } from '../errors.js';
import type { ScheduledMessage } from '../scheduling/scheduleMessage.js';
import type { PreparedMessage } from '../store/appendToStream.js';
import {
  type AppendOptions,
  checkStreamName,
  prepareStreamAppends,
  type StreamAppend,
} from '../store/messageStore.js';
import { upcast } from '../store/messageTypes.js';
import { prepareMessageList } from '../store/prepareMessage.js';
import {
  type AppendResult,
  type ExpectedVersion,
  LOG_START,
  type LogPosition,
  type Metadata,
  type NewMessage,
  type ReadLogOptions,
  type ReadLogResult,
  type ReadStreamOptions,
  type RecordedMessage,
} from '../store/types.js';
import { assertReadByQueryOptions, assertReadForDecisionOptions } from '../validation/options.js';
import {
  asJson,
  assertExpectedVersion,
  compareLog,
  conditionViolation,
  copy,
  deliveryTime,
  firstPositionFits,
  parseSnapshot,
  SNAPSHOT_PREFIX,
  type Stored,
  versionMatches,
} from './inMemoryRules.js';
import { messageIdConflict } from './pendingErrors.js';
import type { MessageStoreApi } from './storeApi.js';
import { createTestClock, type TestClock } from './testClock.js';

export interface InMemoryStoreOptions {
  /** Message type mappings (validators on append, upcasters on read), as for createMessageStore. */
  messages?: Record<string, MessageDefinition>;
  /** The clock of `createdAt` and of scheduled messages. Default: a test clock at 2025-01-01. */
  clock?: TestClock;
  /** The first transaction id (default 1). Start it below a power of ten to test code that orders log positions. */
  firstTransactionId?: bigint;
}

/** A scheduled message waiting in the in-memory store (the PostgreSQL one's fields, less delivery bookkeeping). */
export type InMemoryScheduledMessage = Pick<
  ScheduledMessage,
  'id' | 'stream' | 'type' | 'data' | 'metadata' | 'tags' | 'deliverAt'
>;

interface Pending {
  stream: string;
  expected: ExpectedVersion;
  messages: PreparedMessage[];
}

interface State {
  defs: Record<string, MessageDefinition>;
  clock: TestClock;
  /** Every message in log order: (transaction id, global position), both increasing here. */
  log: Stored[];
  streams: Map<string, Stored[]>;
  byId: Map<string, Stored>;
  nextTxid: bigint;
  scheduled: Map<string, InMemoryScheduledMessage>;
  /** Deciders' snapshots by key and state version (`key|version`). */
  snapshots: Map<string, Snapshot>;
}

/**
 * A message store in memory, for tests: the MessageStore's interface and semantics (expected
 * versions and their errors, atomic multi-stream appends, appends idempotent by message id,
 * the same log positions, tags, queries and conditional appends, correlation and causation),
 * plus scheduled messages on a controllable clock. Every append is one transaction that commits
 * at once, so the log has no gaps and reads are final. What it cannot do the same way (a caller's
 * PostgreSQL transaction) it refuses.
 */
export class InMemoryMessageStore implements MessageStoreApi {
  readonly #state: State;
  readonly #inherited: Metadata | undefined;

  /** @internal use createInMemoryStore() */
  constructor(state: State, inherited?: Metadata) {
    this.#state = state;
    this.#inherited = inherited;
  }

  /** The store's clock (advance it to make scheduled messages due). */
  get clock(): TestClock {
    return this.#state.clock;
  }

  get messageDefinitions(): Record<string, MessageDefinition> {
    return this.#state.defs;
  }

  /** A store whose appends inherit correlation and causation from `cause`, as MessageStore.causedBy. */
  causedBy(cause: Pick<RecordedMessage, 'id' | 'metadata'>): InMemoryMessageStore {
    return new InMemoryMessageStore(this.#state, {
      correlationId: cause.metadata.correlationId ?? cause.id,
      causationId: cause.id,
    });
  }

  /**
   * Not supported: a PostgreSQL client's transaction cannot hold in-memory writes. Throws, rather
   * than writing outside the transaction and pretending it committed with it.
   */
  withTransaction(_client: unknown): never {
    throw new InvalidInputError(
      'The in-memory store cannot join a PostgreSQL transaction (withTransaction).',
      "Test code that writes inside a caller's transaction against PostgreSQL (test/helpers/db.ts setupDb, or a projection harness with a real client).",
    );
  }

  /** Validate and complete messages as every write path of the PostgreSQL store does. */
  async prepareMessages(messages: NewMessage[]): Promise<PreparedMessage[]> {
    if (messages.length === 0) throw new InvalidInputError('Nothing to append: the message list is empty.');
    const prepared = await prepareMessageList(messages, this.#state.defs, this.#inherited);
    return prepared.map((p) => ({ ...p, data: asJson(p.data), metadata: asJson(p.metadata) as Metadata }));
  }

  async append(
    stream: string,
    messages: NewMessage | NewMessage[],
    opts: AppendOptions = {},
  ): Promise<AppendResult> {
    checkStreamName(stream);
    const expected = opts.expectedVersion ?? 'any';
    assertExpectedVersion(expected);
    const prepared = await this.prepareMessages(Array.isArray(messages) ? messages : [messages]);
    const result = this.#commit([{ stream, expected, messages: prepared }], undefined).get(stream)!;
    return { streamVersion: result.streamVersion, globalPosition: result.globalPosition };
  }

  async appendMultiple(appends: StreamAppend[]): Promise<Map<string, AppendResult>> {
    if (appends.length === 0) throw new InvalidInputError('Nothing to append: no streams given.');
    // Written in stream-name order, as the PostgreSQL store does (its lock order).
    const pending = await prepareStreamAppends(appends, (m) => this.prepareMessages(m));
    const results = this.#commit(pending, undefined);
    return new Map(
      [...results].map(([s, r]) => [s, { streamVersion: r.streamVersion, globalPosition: r.globalPosition }]),
    );
  }

  /**
   * Append atomically unless a message matching the condition's query exists after its position
   * (AppendConditionFailedError, nothing written), as appendWithCondition() does.
   */
  async appendWithCondition(
    appends: ConditionalStreamAppend[],
    condition?: AppendCondition,
  ): Promise<ConditionalAppendResult> {
    assertAppendCondition(condition);
    if (!Array.isArray(appends) || appends.length === 0)
      throw new InvalidInputError('Nothing to append: no streams given.');
    const pending: Pending[] = [];
    for (const a of appends) {
      checkStreamName(a.stream);
      if (pending.some((p) => p.stream === a.stream))
        throw new InvalidInputError(`Stream "${a.stream}" appears twice in one append: merge its messages.`);
      const expected = a.expectedVersion ?? 'any';
      if (
        !(expected === 'any' || expected === 'no_stream' || expected === 'stream_exists') &&
        !(typeof expected === 'number' && Number.isInteger(expected) && expected >= 0)
      )
        throw new InvalidInputError(
          `Invalid expected version ${JSON.stringify(expected)} for "${a.stream}".`,
        );
      const messages = Array.isArray(a.messages) ? a.messages : [a.messages];
      if (messages.length === 0)
        throw new InvalidInputError(`Nothing to append to "${a.stream}": the message list is empty.`);
      pending.push({ stream: a.stream, expected, messages: await this.prepareMessages(messages) });
    }
    const check = condition ? () => conditionViolation(this.#state.log, condition) : undefined;
    const results = this.#commit(pending, check);
    let position: LogPosition = LOG_START;
    const streams = new Map<string, { streamVersion: number; globalPosition: number }>();
    for (const [stream, r] of results) {
      streams.set(stream, { streamVersion: r.streamVersion, globalPosition: r.globalPosition });
      if (r.globalPosition > position.globalPosition)
        position = { transactionId: r.transactionId, globalPosition: r.globalPosition };
    }
    return { streams, position };
  }

  /*
   * The one writer: checks and writes with no await in between, so an append is atomic and
   * appends are serialised. A failed check (version, condition, a message id already stored) is
   * settled as the PostgreSQL store does: every id stored just as this append writes it means
   * it is a retry of a committed append, which returns the original result.
   */
  #commit(
    pending: Pending[],
    check: (() => Error | undefined) | undefined,
  ): Map<string, AppendResult & { transactionId: string }> {
    const s = this.#state;
    let failure: Error | undefined = check?.();
    if (!failure)
      for (const p of pending) {
        const actual = this.#version(p.stream);
        if (!versionMatches(p.expected, actual)) {
          failure = new WrongExpectedVersionError(p.stream, p.expected, actual);
          break;
        }
      }
    const ids = pending.flatMap((p) => p.messages.map((m) => m.id));
    if (!failure && (ids.some((id) => s.byId.has(id)) || new Set(ids).size !== ids.length))
      failure = messageIdConflict(
        ids.filter((id, i) => s.byId.has(id) || ids.indexOf(id) !== i),
        'or appears twice in this append',
      );
    if (failure) {
      const stored = this.#storedAppends(pending);
      if (!stored) throw failure;
      return stored;
    }
    const txid = s.nextTxid++;
    const transactionId = txid.toString();
    const createdAt = s.clock.now();
    const results = new Map<string, AppendResult & { transactionId: string }>();
    for (const p of pending) {
      let list = s.streams.get(p.stream);
      if (!list) {
        list = [];
        s.streams.set(p.stream, list);
      }
      let position = this.#version(p.stream);
      for (const m of p.messages) {
        position += 1;
        const stored: Stored = {
          txid,
          message: {
            id: m.id,
            type: m.type,
            data: m.data,
            metadata: m.metadata,
            tags: [...m.tags],
            streamName: p.stream,
            streamPosition: position,
            globalPosition: s.log.length + 1,
            transactionId,
            createdAt,
          },
        };
        s.log.push(stored);
        list.push(stored);
        s.byId.set(m.id, stored);
      }
      results.set(p.stream, { streamVersion: position, globalPosition: s.log.length, transactionId });
    }
    return results;
  }

  /** The original results when every id is stored as `pending` writes it; undefined when none is stored. */
  #storedAppends(pending: Pending[]): Map<string, AppendResult & { transactionId: string }> | undefined {
    const s = this.#state;
    const ids = pending.flatMap((p) => p.messages.map((m) => m.id));
    const found = ids.filter((id) => s.byId.has(id));
    if (found.length === 0) return undefined;
    const results = new Map<string, AppendResult & { transactionId: string }>();
    for (const p of pending) {
      const first = s.byId.get(p.messages[0]!.id);
      let last: Stored | undefined;
      for (const [i, m] of p.messages.entries()) {
        const r = s.byId.get(m.id);
        if (
          !r ||
          !first ||
          r.message.streamName !== p.stream ||
          r.message.streamPosition !== first.message.streamPosition + i ||
          !firstPositionFits(p.expected, first.message.streamPosition)
        )
          throw messageIdConflict(
            found,
            r
              ? `in stream "${r.message.streamName}" at position ${r.message.streamPosition}, not as this append to "${p.stream}" would write it`
              : `but ${m.id}, of the same append, is not: not a retry of one append`,
          );
        last = r;
      }
      results.set(p.stream, {
        streamVersion: last!.message.streamPosition,
        globalPosition: last!.message.globalPosition,
        transactionId: last!.message.transactionId,
      });
    }
    return results;
  }

  #version(stream: string): number {
    const list = this.#state.streams.get(stream);
    return list?.[list.length - 1]?.message.streamPosition ?? 0;
  }

  #out(stored: Stored[]): RecordedMessage[] {
    return upcast(this.#state.defs, stored.map(copy));
  }

  async readStream(stream: string, opts: ReadStreamOptions = {}): Promise<RecordedMessage[]> {
    checkStreamName(stream);
    const list = this.#state.streams.get(stream) ?? [];
    const limit = opts.limit ?? 1000;
    if (opts.direction === 'backward') {
      const from = opts.from ?? Number.MAX_SAFE_INTEGER;
      const out: Stored[] = [];
      for (let i = list.length - 1; i >= 0 && out.length < limit; i--)
        if (list[i]!.message.streamPosition <= from) out.push(list[i]!);
      return this.#out(out);
    }
    const from = opts.from ?? 1;
    // Positions are 1..version with no holes here (no retention), so the index is position - 1.
    return this.#out(list.slice(Math.max(0, from - 1), Math.max(0, from - 1) + limit));
  }

  async streamVersion(stream: string): Promise<number> {
    checkStreamName(stream);
    return this.#version(stream);
  }

  /** A category's messages in log order (the stream name's part before the first "-"). */
  async readCategory(category: string, opts: ReadLogOptions = {}): Promise<ReadLogResult> {
    if (typeof category !== 'string' || category === '' || category.includes('-'))
      throw new InvalidInputError(
        `Invalid category ${JSON.stringify(category)}: a category is the stream name's part before the first "-".`,
      );
    return this.#readLog(opts, (m) => m.streamName.split('-', 1)[0] === category);
  }

  /** The whole log in order. Every append here commits at once, so the log has no gaps. */
  async readAll(opts: ReadLogOptions = {}): Promise<ReadLogResult> {
    return this.#readLog(opts, () => true);
  }

  #readLog(opts: ReadLogOptions, keep: (m: RecordedMessage) => boolean): ReadLogResult {
    const after = opts.after ?? LOG_START;
    const limit = opts.limit ?? 1000;
    const types = opts.types?.length ? new Set(opts.types) : undefined;
    const log = this.#state.log;
    const out: Stored[] = [];
    for (let i = this.#firstAfter(after); i < log.length && out.length < limit; i++) {
      const s = log[i]!;
      if (keep(s.message) && (!types || types.has(s.message.type))) out.push(s);
    }
    return this.#result(out, after);
  }

  #result(out: Stored[], after: LogPosition): ReadLogResult {
    const last = out[out.length - 1]?.message;
    return {
      messages: this.#out(out),
      position: last ? { transactionId: last.transactionId, globalPosition: last.globalPosition } : after,
    };
  }

  /** Index of the first log entry after `after` (the log is sorted by (transaction id, position)). */
  #firstAfter(after: LogPosition): number {
    const log = this.#state.log;
    let lo = 0;
    let hi = log.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const s = log[mid]!;
      if (compareLog(s.txid, s.message.globalPosition, after) <= 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** The messages matching a query, in log order, after a position (as readByQuery()). */
  async readByQuery(query: Query, opts: ReadByQueryOptions = {}): Promise<ReadByQueryResult> {
    assertQuery(query);
    assertReadByQueryOptions(opts);
    let after = LOG_START;
    if (typeof opts.after === 'number') {
      if (opts.after !== 0) {
        const s = this.#state.log[opts.after - 1];
        if (!s)
          throw new NotFoundError(
            `No message at global position ${opts.after}.`,
            'Continue from the global position of a message you read.',
          );
        after = { transactionId: s.message.transactionId, globalPosition: opts.after };
      }
    } else if (opts.after) after = opts.after;
    const limit = opts.limit ?? 1000;
    const log = this.#state.log;
    const out: Stored[] = [];
    for (let i = this.#firstAfter(after); i < log.length && out.length < limit; i++)
      if (query.matches(log[i]!.message)) out.push(log[i]!);
    return this.#result(out, after);
  }

  /**
   * Every matching message, with the read's snapshot (pass it as the condition's `after`), as
   * readForDecision(). With `since`, only what that earlier read did not see.
   */
  async readForDecision(
    query: Query,
    opts: { since?: string; pageSize?: number } = {},
  ): Promise<ReadForDecisionResult> {
    assertQuery(query);
    assertReadForDecisionOptions(opts);
    const since = opts.since === undefined ? 0 : parseSnapshot(opts.since);
    const log = this.#state.log;
    const out = log.slice(since).filter((s) => query.matches(s.message));
    return { messages: this.#out(out), snapshot: `${SNAPSHOT_PREFIX}${log.length}` };
  }

  /** The latest decider snapshot for a key at this state version, if any (as loadSnapshot()). */
  async loadSnapshot(key: string, stateVersion: number): Promise<Snapshot | undefined> {
    const s = this.#state.snapshots.get(`${key}|${stateVersion}`);
    return s ? structuredClone(s) : undefined;
  }

  /** Save or advance a decider snapshot; one of fewer messages never replaces it (as saveSnapshot()). */
  async saveSnapshot(snapshot: Snapshot): Promise<void> {
    const id = `${snapshot.key}|${snapshot.stateVersion}`;
    const had = this.#state.snapshots.get(id);
    if (had && had.messageCount >= snapshot.messageCount) return;
    // Stored as JSON, as the snapshots table's jsonb column does.
    const state = JSON.parse(JSON.stringify(snapshot.state ?? null)) as unknown;
    this.#state.snapshots.set(id, { ...snapshot, state, createdAt: this.#state.clock.now() });
  }

  /**
   * Schedule a message for `stream` at a time or after a delay on the store's clock; returns its
   * id. Scheduling an id that is still pending again is a no-op, as scheduleMessage().
   */
  async schedule(
    stream: string,
    message: NewMessage,
    when: { at: Date } | { delay: number },
  ): Promise<string> {
    checkStreamName(stream);
    const at = deliveryTime(when, this.#state.clock.now());
    const [m] = (await this.prepareMessages([message])) as [PreparedMessage];
    if (!this.#state.scheduled.has(m.id))
      this.#state.scheduled.set(m.id, { ...m, stream, tags: [...m.tags], deliverAt: at });
    return m.id;
  }

  /** Cancel a pending scheduled message: true when it was pending. */
  async cancelScheduled(id: string): Promise<boolean> {
    return this.#state.scheduled.delete(id.toLowerCase());
  }

  /** Pending scheduled messages, the next due first. */
  listScheduled(opts: { stream?: string } = {}): InMemoryScheduledMessage[] {
    return [...this.#state.scheduled.values()]
      .filter((s) => opts.stream === undefined || s.stream === opts.stream)
      .sort((a, b) => a.deliverAt.getTime() - b.deliverAt.getTime())
      .map((s) => ({
        ...s,
        data: structuredClone(s.data),
        metadata: structuredClone(s.metadata),
        tags: [...s.tags],
      }));
  }

  /**
   * Append every scheduled message due on the clock (each under its id, expected version "any"),
   * the earliest first. One already in the store under its id is dropped, as the scheduler does.
   */
  async deliverDue(): Promise<{ delivered: number; duplicates: number }> {
    const now = this.#state.clock.now().getTime();
    let delivered = 0;
    let duplicates = 0;
    for (const s of this.listScheduled()) {
      if (s.deliverAt.getTime() > now) break;
      this.#state.scheduled.delete(s.id);
      if (this.#state.byId.has(s.id)) {
        duplicates += 1;
        continue;
      }
      const { id, type, data, metadata, tags } = s;
      this.#commit(
        [{ stream: s.stream, expected: 'any', messages: [{ id, type, data, metadata, tags }] }],
        undefined,
      );
      delivered += 1;
    }
    return { delivered, duplicates };
  }

  /** Nothing to wake: in-memory subscriptions run when their run() is called. */
  notify(): void {}

  async close(): Promise<void> {}
}

/** A new, empty in-memory message store. */
export function createInMemoryStore(opts: InMemoryStoreOptions = {}): InMemoryMessageStore {
  const first = opts.firstTransactionId ?? 1n;
  if (first < 1n) throw new InvalidInputError('firstTransactionId must be >= 1.');
  return new InMemoryMessageStore({
    defs: opts.messages ?? {},
    clock: opts.clock ?? createTestClock(),
    log: [],
    streams: new Map(),
    byId: new Map(),
    nextTxid: first,
    scheduled: new Map(),
    snapshots: new Map(),
  });
}
