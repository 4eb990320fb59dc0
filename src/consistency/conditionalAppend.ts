import type { Queryable, SqlContext } from '../db/queryable.js';
import { statement } from '../db/queryable.js';
import { sqlStateOf } from '../db/sqlstate.js';
import { AppendConditionFailedError, InvalidInputError, WrongExpectedVersionError } from '../errors.js';
import {
  expectedVersionCode,
  isPositionTaken,
  TAG_SEPARATOR_CHAR,
  UNKNOWN_VERSION,
} from '../store/appendToStream.js';
import { assertExpectedVersion, checkStreamName, type MessageStore } from '../store/messageStore.js';
import { assertDistinctIds } from '../store/prepareMessage.js';
import { streamVersion } from '../store/readStream.js';
import { settleFailedWrite } from '../store/storedAppends.js';
import type { ExpectedVersion, LogPosition, NewMessage } from '../store/types.js';
import { quoteValue } from '../validation/quoteValue.js';
import { type GatedAppend, runGated } from './conditionalBatcher.js';
import { type After, snapshotBounds } from './conditionSql.js';
import { appendLocks } from './lockKeys.js';
import { Query } from './query.js';
import type { DecisionSnapshot } from './readByQuery.js';

/** Messages for one stream in a conditional append. */
export interface ConditionalStreamAppend {
  stream: string;
  messages: NewMessage | NewMessage[];
  /** Default `'any'`: in a DCB append the condition, not the stream version, guards the decision. */
  expectedVersion?: ExpectedVersion;
}

/** Fail the append if a message matching `failIfEventsMatch` exists after `after`. */
export interface AppendCondition {
  failIfEventsMatch: Query;
  /**
   * What the decision was made on; a matching message counts only when the decision did not see it:
   * - the result of `readForDecision()` (its read snapshot): exact, and never held back by other
   *   transactions; the executor uses this;
   * - a LogPosition from the gap-safe `readByQuery()` (its `position`), or the global position
   *   of the last message such a read returned.
   * Undefined: no matching message may exist at all.
   */
  after?: LogPosition | number | DecisionSnapshot;
}

export interface ConditionalAppendResult {
  /** Per stream: its version after the append and the global position of its last message. */
  streams: Map<string, { streamVersion: number; globalPosition: number }>;
  /** Log position of the last appended message. */
  position: LogPosition;
}

const CONDITION_FAILED = 'BKC01';
const WRONG_VERSION_ONE = 'BKV01';
const NOT_READ_COMMITTED = 'BKC02';
const WRONG_VERSION_OF = 'BKV02';

interface Prepared {
  streams: string[];
  expected: number[];
  streamIdx: number[];
  ids: string[];
  types: string[];
  data: string[];
  metadata: string[];
  tags: string[];
  forLocks: { type: string; tags: string[] }[];
}

async function prepare(store: MessageStore, appends: ConditionalStreamAppend[]) {
  if (!Array.isArray(appends) || appends.length === 0)
    throw new InvalidInputError('Nothing to append: no streams given.');
  const p: Prepared = {
    streams: [],
    expected: [],
    streamIdx: [],
    ids: [],
    types: [],
    data: [],
    metadata: [],
    tags: [],
    forLocks: [],
  };
  for (const a of appends) {
    checkStreamName(a.stream);
    if (p.streams.includes(a.stream))
      throw new InvalidInputError(`Stream "${a.stream}" appears twice in one append: merge its messages.`);
    const expected = a.expectedVersion ?? 'any';
    assertExpectedVersion(expected);
    p.streams.push(a.stream);
    p.expected.push(expectedVersionCode(expected));
    const messages = Array.isArray(a.messages) ? a.messages : [a.messages];
    if (messages.length === 0)
      throw new InvalidInputError(`Nothing to append to "${a.stream}": the message list is empty.`);
    for (const m of await store.prepareMessages(messages)) {
      p.streamIdx.push(p.streams.length);
      p.ids.push(m.id);
      p.types.push(m.type);
      p.data.push(JSON.stringify(m.data));
      p.metadata.push(JSON.stringify(m.metadata));
      p.tags.push(m.tags.join(TAG_SEPARATOR_CHAR));
      p.forLocks.push({ type: m.type, tags: m.tags });
    }
  }
  if (p.streams.length > 1) assertDistinctIds(p.ids);
  return p;
}

// The lock keys ($1, $2) as the ids append_with_condition() takes, ascending (lockKeys.ts).
const sql = (ctx: SqlContext) =>
  `WITH l AS (SELECT ${ctx.s}.lock_id(u.k) AS id, bool_or(u.e) AS e FROM unnest($1::text[], $2::boolean[]) AS u(k, e) GROUP BY 1)
   SELECT stream_name, stream_version, last_global_position, transaction_id
     FROM ${ctx.s}.append_with_condition(ARRAY(SELECT id FROM l ORDER BY id), ARRAY(SELECT e FROM l ORDER BY id),
       $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`;

type Row = {
  stream_name: string;
  stream_version: number;
  last_global_position: number;
  transaction_id: string;
};

const notReadCommitted = () =>
  new InvalidInputError(
    'appendWithCondition needs a READ COMMITTED transaction: in REPEATABLE READ or SERIALIZABLE its check could miss commits made under its locks.',
  );

/**
 * Append to one or more streams, atomically, unless a message matching the condition's query
 * exists after the condition's position: then throw AppendConditionFailedError and write nothing.
 *
 * Race-free: appends whose messages could match each other's conditions are serialised by
 * advisory locks before the check (see migrations/0003_consistency.sql); appends with disjoint
 * conditions do not wait for each other. Without a condition, the append still takes the locks
 * of its messages, so concurrent conditional appends see it; a plain `store.append` does not,
 * so write messages that conditions may match through this function.
 *
 * Runs as one statement on the store's pool, or in your transaction: on `opts.db` (a client inside
 * it) or on the client of a store bound to it (`store.withTransaction(client)`, a transactional
 * handler's `ctx.store`). That transaction must be READ COMMITTED: the locks are then held, and the
 * messages become visible, when you commit.
 */
export function appendWithCondition(
  store: MessageStore,
  appends: ConditionalStreamAppend[],
  condition?: AppendCondition,
  opts: { db?: Queryable } = {},
): Promise<ConditionalAppendResult> {
  return store.track(() => appendOnce(store, appends, condition, opts));
}

/** Refuse a condition that is not a Query with a readForDecision() result, LogPosition or position. */
export function assertAppendCondition(condition: AppendCondition | undefined): void {
  if (condition !== undefined && !(condition.failIfEventsMatch instanceof Query))
    throw new InvalidInputError(
      'condition.failIfEventsMatch must be a Query (Query.of(...) or Query.all()).',
    );
  const after = condition?.after;
  if (
    after !== undefined &&
    !(typeof after === 'number' && Number.isSafeInteger(after) && after >= 0) &&
    !(
      typeof after === 'object' &&
      after !== null &&
      ('snapshot' in after ? typeof after.snapshot === 'string' : typeof after.transactionId === 'string')
    )
  )
    throw new InvalidInputError(
      `Invalid condition position ${quoteValue(after)}: use a readForDecision() result, a LogPosition or a global position.`,
    );
}

async function appendOnce(
  store: MessageStore,
  appends: ConditionalStreamAppend[],
  condition: AppendCondition | undefined,
  opts: { db?: Queryable },
): Promise<ConditionalAppendResult> {
  assertAppendCondition(condition);
  const after = condition?.after;
  const snapshot = typeof after === 'object' && 'snapshot' in after ? after.snapshot : null;
  const position = typeof after === 'object' && !('snapshot' in after) ? after : undefined;
  const p = await prepare(store, appends);
  const query = condition?.failIfEventsMatch;
  const locks = appendLocks(query, p.forLocks);
  // A query matching everything is checked as one item with no filter.
  const items = query ? (query.matchesAll ? [{}] : query.items) : [];
  const ctx = store.sqlContext;
  // A store bound to a transaction writes in it, like its append(): never on the pool.
  const bound = opts.db ?? store.transactionClient;
  const db = bound ?? store.pool;
  const conditionFailed = () =>
    new AppendConditionFailedError(typeof after === 'number' ? after : position?.globalPosition);
  let announced = false;
  const attempt = async (): Promise<Row[]> => {
    let rows: Row[];
    try {
      if (p.streams.length === 1 && p.ids.length === 1 && p.expected[0]! >= 0 && typeof after !== 'number') {
        const at: After = snapshot
          ? { kind: 'snapshot', ...snapshotBounds(snapshot) }
          : position
            ? { kind: 'position', ...position }
            : { kind: 'none' };
        const gated: GatedAppend = {
          id: p.ids[0]!,
          stream: p.streams[0]!,
          expected: p.expected[0]!,
          type: p.types[0]!,
          data: p.data[0]!,
          metadata: p.metadata[0]!,
          tags: p.forLocks[0]!.tags,
          locks,
          after: at,
          items,
        };
        // On the store's pool, group-committed with concurrent ones (conditionalBatcher.ts), which
        // also announces them.
        const o = bound ? (await runGated(db, ctx, [gated]))[0]! : await store.writer.gated.append(gated);
        announced = !bound;
        if (o.kind === 'unchecked') throw o.error;
        if (o.kind === 'not_read_committed') throw notReadCommitted();
        if (o.kind === 'condition_failed') throw conditionFailed();
        rows =
          o.kind === 'appended'
            ? [
                {
                  stream_name: gated.stream,
                  stream_version: gated.expected + 1,
                  last_global_position: o.globalPosition,
                  transaction_id: o.transactionId,
                },
              ]
            : [];
      } else {
        // Every other shape: append_with_condition() (migrations 0007, 0008).
        ({ rows } = await db.query<Row>(
          statement(ctx, 'cond_append', sql(ctx), [
            locks.keys,
            locks.exclusive,
            items.map((i) => (i.types ?? []).join(TAG_SEPARATOR_CHAR)),
            items.map((i) => (i.tags ?? []).join(TAG_SEPARATOR_CHAR)),
            position ? position.transactionId : null,
            typeof after === 'number' ? after : (position?.globalPosition ?? null),
            snapshot,
            p.streams,
            p.expected,
            p.streamIdx,
            p.ids,
            p.types,
            p.data,
            p.metadata,
            p.tags,
          ]),
        ));
      }
    } catch (err) {
      const state = sqlStateOf(err);
      if (state === CONDITION_FAILED) throw conditionFailed();
      if (state === NOT_READ_COMMITTED) throw notReadCommitted();
      if (state === WRONG_VERSION_ONE) {
        const stream = p.streams[0]!;
        throw new WrongExpectedVersionError(
          stream,
          appends[0]?.expectedVersion ?? 'any',
          Number((err as { detail?: string }).detail ?? 0),
        );
      }
      // A plain append with an exact expected version (no lock, migration 0006) took a position first.
      if (isPositionTaken(err)) {
        const one = p.streams.length === 1 ? p.streams[0]! : undefined;
        // Outside a caller's transaction, the actual version can be read now that this one failed.
        const actual =
          one && !bound ? await streamVersion(store.pool, store.sqlContext, one) : UNKNOWN_VERSION;
        throw new WrongExpectedVersionError(
          one ?? p.streams.join(', '),
          (one ? appends[0]?.expectedVersion : undefined) ?? 'any',
          actual,
        );
      }
      if (state === WRONG_VERSION_OF) {
        const detail = JSON.parse((err as { detail?: string }).detail ?? '{}') as {
          stream: string;
          actual: number;
        };
        const i = p.streams.indexOf(detail.stream);
        const given = appends[i]?.expectedVersion ?? 'any';
        throw new WrongExpectedVersionError(detail.stream, given, detail.actual);
      }
      throw err;
    }
    // The single INSERT wrote nothing: position N does not exist, the stream is shorter (nothing
    // failed, so its version can be read here, inside a caller's transaction too).
    if (rows.length === 0) {
      const stream = p.streams[0]!;
      throw new WrongExpectedVersionError(
        stream,
        appends[0]?.expectedVersion ?? 'any',
        await streamVersion(db, ctx, stream),
      );
    }
    return rows;
  };
  let rows: Row[];
  try {
    rows = await attempt();
  } catch (err) {
    // On the store's pool: a retry of a committed append gets its original result, a lost
    // connection AppendOutcomeUnknownError (src/store/storedAppends.ts).
    if (bound) throw err;
    const givenIds = appends.some((a) =>
      (Array.isArray(a.messages) ? a.messages : [a.messages]).some((m) => m?.id !== undefined),
    );
    const sent = p.streams.map((stream, i) => ({
      stream,
      expected: appends[i]?.expectedVersion ?? 'any',
      ids: p.ids.filter((_, k) => p.streamIdx[k] === i + 1),
      givenIds,
    }));
    const stored = await settleFailedWrite(store.pool, ctx, sent, err);
    rows = [...stored].map(([stream_name, r]) => ({
      stream_name,
      stream_version: r.streamVersion,
      last_global_position: r.globalPosition,
      transaction_id: r.transactionId,
    }));
  }
  if (!bound && !announced) store.notify();
  const streams = new Map<string, { streamVersion: number; globalPosition: number }>();
  let last: LogPosition = { transactionId: '0', globalPosition: 0 };
  for (const r of rows) {
    streams.set(r.stream_name, { streamVersion: r.stream_version, globalPosition: r.last_global_position });
    if (r.last_global_position > last.globalPosition)
      last = { transactionId: r.transaction_id, globalPosition: r.last_global_position };
  }
  return { streams, position: last };
}
