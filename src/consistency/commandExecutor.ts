import { SqlState, sqlStateOf } from '../db/sqlstate.js';
import {
  AppendConditionFailedError,
  AppendOutcomeUnknownError,
  InvalidInputError,
  WrongExpectedVersionError,
} from '../errors.js';
import type { AppendOptions, MessageStore, StreamAppend } from '../store/messageStore.js';
import type {
  AppendResult,
  ExpectedVersion,
  NewMessage,
  ReadStreamOptions,
  RecordedMessage,
} from '../store/types.js';
import {
  type AppendCondition,
  appendWithCondition,
  type ConditionalAppendResult,
  type ConditionalStreamAppend,
} from './conditionalAppend.js';
import type { Boundary, DecidedMessage, Decider } from './decider.js';
import type { Query } from './query.js';
import { type ReadForDecisionResult, readForDecision } from './readByQuery.js';
import { loadSnapshot, type Snapshot, saveSnapshot } from './snapshots.js';

/**
 * What a CommandExecutor needs of a store: the PostgreSQL MessageStore's reads and appends and the
 * consistency functions as methods. The in-memory store (beckett/testing) is one, so is any
 * MessageStoreApi. Without the snapshot methods, deciders' snapshot policies are ignored: every
 * load folds the whole boundary.
 */
export interface DecisionStore {
  readStream(stream: string, opts?: ReadStreamOptions): Promise<RecordedMessage[]>;
  append(stream: string, messages: NewMessage | NewMessage[], opts?: AppendOptions): Promise<AppendResult>;
  appendMultiple(appends: StreamAppend[]): Promise<Map<string, AppendResult>>;
  readForDecision(query: Query, opts?: { since?: string; pageSize?: number }): Promise<ReadForDecisionResult>;
  appendWithCondition(
    appends: ConditionalStreamAppend[],
    condition?: AppendCondition,
  ): Promise<ConditionalAppendResult>;
  /** The latest snapshot for a key at this state version, if any. */
  loadSnapshot?(key: string, stateVersion: number): Promise<Snapshot | undefined>;
  /** Save (or advance: never replace a snapshot of more messages) the snapshot for a key and state version. */
  saveSnapshot?(snapshot: Snapshot): Promise<void>;
}

/** The PostgreSQL store as a DecisionStore: its methods, the consistency functions and its snapshots table. */
export function decisionStoreOf(store: MessageStore | DecisionStore): DecisionStore {
  if ('readForDecision' in store) return store;
  return {
    readStream: (stream, opts) => store.readStream(stream, opts),
    append: (stream, messages, opts) => store.append(stream, messages, opts),
    appendMultiple: (appends) => store.appendMultiple(appends),
    readForDecision: (query, opts) => readForDecision(store, query, opts),
    appendWithCondition: (appends, condition) => appendWithCondition(store, appends, condition),
    loadSnapshot: (key, stateVersion) => loadSnapshot(store.pool, store.sqlContext, key, stateVersion),
    saveSnapshot: (snapshot) => saveSnapshot(store.pool, store.sqlContext, snapshot),
  };
}

export interface CommandExecutorOptions {
  /** Most attempts per command (the first try included). Default 5. */
  maxAttempts?: number;
  /** First retry waits up to this many ms (full jitter), doubling per attempt. Default 10. */
  baseDelayMs?: number;
  /** Upper bound of a retry's wait. Default 500. */
  maxDelayMs?: number;
}

/** A decider's state as loaded from its boundary. */
export interface LoadedState<State> {
  state: State;
  /** Stream boundary: the stream's version. */
  version?: number;
  /** Several streams: each stream's version. */
  versions?: Map<string, number>;
  /** Query boundary: the snapshot of the read (what the append condition checks against). */
  readSnapshot?: string;
  /** Messages folded in this load (the tail after the snapshot, if one was used). */
  folded: number;
  /** Messages the state includes in all (snapshot + tail). */
  messageCount: number;
  /** True when the load started from a snapshot. */
  fromSnapshot: boolean;
}

export interface ExecuteResult<State> {
  /** The state the decision was made on. */
  state: State;
  /** What was appended, per stream (empty when the decider emitted nothing). */
  appended: { stream: string; messages: NewMessage[] }[];
  /** Attempts used (1 when there was no conflict). */
  attempts: number;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Version conflicts and failed conditions: decide again on fresh state. */
export function isRetryableConflict(err: unknown): boolean {
  if (err instanceof WrongExpectedVersionError || err instanceof AppendConditionFailedError) return true;
  const state = sqlStateOf(err);
  return state === SqlState.deadlockDetected || state === SqlState.serializationFailure;
}

function snapshotKey(decider: Decider<unknown, unknown>, boundary: string): string {
  return `${decider.name}|${boundary}`;
}

const PAGE = 1000;

/**
 * Runs commands through deciders: load the state (snapshot + tail), decide, append guarded by
 * the boundary's versions or condition, and on a conflict load and decide again, up to
 * `maxAttempts`, waiting a jittered, growing delay between attempts.
 */
export class CommandExecutor {
  readonly #store: DecisionStore;
  readonly #maxAttempts: number;
  readonly #baseDelayMs: number;
  readonly #maxDelayMs: number;

  /** On the PostgreSQL MessageStore, or any DecisionStore (the in-memory store, a MessageStoreApi). */
  constructor(store: MessageStore | DecisionStore, opts: CommandExecutorOptions = {}) {
    this.#store = decisionStoreOf(store);
    this.#maxAttempts = opts.maxAttempts ?? 5;
    this.#baseDelayMs = opts.baseDelayMs ?? 10;
    this.#maxDelayMs = opts.maxDelayMs ?? 500;
    if (!Number.isInteger(this.#maxAttempts) || this.#maxAttempts < 1)
      throw new InvalidInputError(`maxAttempts must be an integer >= 1, got ${opts.maxAttempts}.`);
  }

  /** Load, decide, append; retry on conflict. Domain errors thrown by decide() are not retried. */
  async execute<State, Command>(
    decider: Decider<State, Command>,
    command: Command,
    boundary: Boundary,
  ): Promise<ExecuteResult<State>> {
    checkDecider(decider);
    for (let attempt = 1; ; attempt++) {
      const loaded = await this.load(decider, boundary);
      const decided = await decider.decide(command, loaded.state);
      try {
        const appended = await this.#appendOnce(decided, boundary, loaded);
        return { state: loaded.state, appended, attempts: attempt };
      } catch (err) {
        if (!isRetryableConflict(err) || attempt >= this.#maxAttempts) throw err;
        const cap = Math.min(this.#maxDelayMs, this.#baseDelayMs * 2 ** (attempt - 1));
        await sleep(Math.random() * cap);
      }
    }
  }

  /** Build the decider's state for a boundary (using and saving snapshots when configured). */
  async load<State, Command>(
    decider: Decider<State, Command>,
    boundary: Boundary,
  ): Promise<LoadedState<State>> {
    checkDecider(decider);
    if ('stream' in boundary) return this.#loadStream(decider, boundary.stream);
    if ('streams' in boundary) return this.#loadStreams(decider, boundary.streams);
    if ('query' in boundary) return this.#loadQuery(decider, boundary);
    throw new InvalidInputError('A boundary is { stream }, { streams } or { query }.');
  }

  async #loadStream<State>(decider: Decider<State, unknown>, stream: string): Promise<LoadedState<State>> {
    const policy = decider.snapshots;
    const key = snapshotKey(decider as Decider<unknown, unknown>, `stream:${stream}`);
    const snap = policy ? await this.#store.loadSnapshot?.(key, policy.stateVersion) : undefined;
    let state = snap ? deserialize(decider, snap.state) : decider.initialState();
    let version = snap?.position ?? 0;
    let folded = 0;
    for (;;) {
      const page = await this.#store.readStream(stream, { from: version + 1, limit: PAGE });
      for (const m of page) state = decider.evolve(state, m);
      folded += page.length;
      // The last position read, not a count: retention may have removed a stream's head.
      version = page[page.length - 1]?.streamPosition ?? version;
      if (page.length < PAGE) break;
    }
    const messageCount = (snap?.messageCount ?? 0) + folded;
    if (policy && folded >= policy.every)
      await this.#store.saveSnapshot?.({
        key,
        stateVersion: policy.stateVersion,
        position: version,
        readSnapshot: null,
        messageCount,
        state: serialize(decider, state),
      });
    return { state, version, folded, messageCount, fromSnapshot: snap !== undefined };
  }

  async #loadStreams<State>(
    decider: Decider<State, unknown>,
    streams: string[],
  ): Promise<LoadedState<State>> {
    if (!Array.isArray(streams) || streams.length === 0)
      throw new InvalidInputError('A { streams } boundary needs at least one stream.');
    const versions = new Map<string, number>();
    const all: RecordedMessage[] = [];
    for (const stream of streams) {
      let version = 0;
      for (;;) {
        const page = await this.#store.readStream(stream, { from: version + 1, limit: PAGE });
        all.push(...page);
        version = page[page.length - 1]?.streamPosition ?? version;
        if (page.length < PAGE) break;
      }
      versions.set(stream, version);
    }
    // Streams are consistent each on its own; across them, fold in the order they were written.
    all.sort((a, b) => a.globalPosition - b.globalPosition);
    let state = decider.initialState();
    for (const m of all) state = decider.evolve(state, m);
    return { state, versions, folded: all.length, messageCount: all.length, fromSnapshot: false };
  }

  async #loadQuery<State>(
    decider: Decider<State, unknown>,
    boundary: Extract<Boundary, { query: unknown }>,
  ): Promise<LoadedState<State>> {
    const policy = decider.snapshots;
    const key = snapshotKey(decider as Decider<unknown, unknown>, `query:${boundary.query.toString()}`);
    const snap = policy ? await this.#store.loadSnapshot?.(key, policy.stateVersion) : undefined;
    let state = snap ? deserialize(decider, snap.state) : decider.initialState();
    // The tail: every matching message the snapshot's read did not see (whatever its position).
    const tail = await this.#store.readForDecision(boundary.query, {
      ...(snap?.readSnapshot ? { since: snap.readSnapshot } : {}),
      pageSize: PAGE,
    });
    for (const m of tail.messages) state = decider.evolve(state, m);
    const folded = tail.messages.length;
    const messageCount = (snap?.messageCount ?? 0) + folded;
    if (policy && folded >= policy.every)
      await this.#store.saveSnapshot?.({
        key,
        stateVersion: policy.stateVersion,
        position: tail.messages[tail.messages.length - 1]?.globalPosition ?? snap?.position ?? 0,
        readSnapshot: tail.snapshot,
        messageCount,
        state: serialize(decider, state),
      });
    return { state, readSnapshot: tail.snapshot, folded, messageCount, fromSnapshot: snap !== undefined };
  }

  /**
   * Append what was decided. A lost connection leaves the append's outcome unknown: it is sent
   * again with the message ids of the first attempt (never decided again), and the store returns
   * the original result if the first one was committed (src/store/storedAppends.ts).
   */
  async #appendOnce<State>(
    decided: DecidedMessage[],
    boundary: Boundary,
    loaded: LoadedState<State>,
  ): Promise<{ stream: string; messages: NewMessage[] }[]> {
    for (let tries = 1; ; tries++) {
      try {
        return await this.#append(decided, boundary, loaded);
      } catch (err) {
        if (!(err instanceof AppendOutcomeUnknownError) || tries >= this.#maxAttempts) throw err;
        decided = withSentIds(decided, boundary, err);
        await sleep(Math.random() * Math.min(this.#maxDelayMs, this.#baseDelayMs * 2 ** (tries - 1)));
      }
    }
  }

  async #append<State>(
    decided: DecidedMessage[],
    boundary: Boundary,
    loaded: LoadedState<State>,
  ): Promise<{ stream: string; messages: NewMessage[] }[]> {
    if (!Array.isArray(decided))
      throw new InvalidInputError('decide() must return an array of messages (empty for none).');
    if (decided.length === 0) return [];
    const single = 'stream' in boundary ? boundary.stream : undefined;
    const byStream = new Map<string, NewMessage[]>();
    for (const { stream, ...message } of decided) {
      const target = stream ?? single;
      if (target === undefined)
        throw new InvalidInputError(
          `decide() returned a "${message.type}" message without a stream: with several streams or a query, set its stream.`,
        );
      if ('streams' in boundary && !boundary.streams.includes(target))
        throw new InvalidInputError(
          `decide() returned a message for stream "${target}", which is not in the boundary: ${boundary.streams.join(', ')}.`,
        );
      const list = byStream.get(target) ?? [];
      list.push(message);
      byStream.set(target, list);
    }
    const appended = [...byStream].map(([stream, messages]) => ({ stream, messages }));
    if ('query' in boundary) {
      await this.#store.appendWithCondition(appended, {
        failIfEventsMatch: boundary.query,
        ...(loaded.readSnapshot ? { after: { snapshot: loaded.readSnapshot } } : {}),
      });
      return appended;
    }
    const expectedOf = (stream: string): ExpectedVersion => {
      if (stream === single) return loaded.version ?? 'any';
      return loaded.versions?.get(stream) ?? 'any';
    };
    if (appended.length === 1 && single !== undefined) {
      const only = appended[0]!;
      await this.#store.append(only.stream, only.messages, { expectedVersion: expectedOf(only.stream) });
    } else {
      await this.#store.appendMultiple(
        appended.map((a) => ({
          stream: a.stream,
          messages: a.messages,
          expectedVersion: expectedOf(a.stream),
        })),
      );
    }
    return appended;
  }
}

/**
 * The decided messages with the ids the lost attempt sent (per stream, in order), so the retry
 * is the same append. Ids are drawn by the store, not here: an append whose ids the store drew
 * cannot be a retry, and then its failures cost no lookup.
 */
function withSentIds(
  decided: DecidedMessage[],
  boundary: Boundary,
  err: AppendOutcomeUnknownError,
): DecidedMessage[] {
  const single = 'stream' in boundary ? boundary.stream : undefined;
  const next = new Map<string, number>();
  return decided.map((m) => {
    const stream = m.stream ?? single ?? '';
    const i = next.get(stream) ?? 0;
    next.set(stream, i + 1);
    const id = err.idsByStream.get(stream)?.[i];
    return id === undefined ? m : { ...m, id };
  });
}

function checkDecider(decider: Decider<any, any>): void {
  if (
    typeof decider !== 'object' ||
    decider === null ||
    typeof decider.initialState !== 'function' ||
    typeof decider.evolve !== 'function' ||
    typeof decider.decide !== 'function'
  )
    throw new InvalidInputError(
      'A decider needs initialState(), evolve(state, message) and decide(command, state).',
    );
  const p = decider.snapshots;
  if (p) {
    if (!decider.name)
      throw new InvalidInputError('A decider with snapshots needs a name (it keys the snapshots).');
    if (!Number.isInteger(p.every) || p.every < 1)
      throw new InvalidInputError(`snapshots.every must be an integer >= 1, got ${p.every}.`);
    if (!Number.isInteger(p.stateVersion))
      throw new InvalidInputError(`snapshots.stateVersion must be an integer, got ${p.stateVersion}.`);
  }
}

function serialize<State>(decider: Decider<State, unknown>, state: State): unknown {
  return decider.snapshots?.serialize ? decider.snapshots.serialize(state) : state;
}

function deserialize<State>(decider: Decider<State, unknown>, json: unknown): State {
  return decider.snapshots?.deserialize ? decider.snapshots.deserialize(json) : (json as State);
}

/** Run one command (a CommandExecutor with the given options). */
export function execute<State, Command>(
  store: MessageStore | DecisionStore,
  decider: Decider<State, Command>,
  command: Command,
  boundary: Boundary,
  opts: CommandExecutorOptions = {},
): Promise<ExecuteResult<State>> {
  return new CommandExecutor(store, opts).execute(decider, command, boundary);
}
