import type pg from 'pg';
import { Query } from '../consistency/query.js';
import type { SqlContext } from '../db/queryable.js';
import { InvalidInputError } from '../errors.js';
import { type TailStart, tailMessages } from '../operations/tail.js';
import { listenForWakeups } from '../subscriptions/listenForWakeups.js';
import { assertCategory, assertStreamName, assertTags } from '../validation/names.js';
import { assertTypeList } from '../validation/options.js';
import { type MessageView, messageView, parseLogPosition } from './pages.js';

/** What a live follow reads: one stream, one category, types and tags, or (nothing given) the whole log. */
export interface FollowOptions {
  stream?: string;
  category?: string;
  types?: string[];
  tags?: string[];
  /**
   * Resume after this log position (`<transactionId>:<globalPosition>`, an event id): no message is
   * lost or repeated. Wins over `from`.
   */
  after?: string;
  /** Where to start without `after`: 'end' (default: new messages only), 'start', or a global position. */
  from?: 'start' | 'end' | number;
  signal: AbortSignal;
  /** Called each time the reader reaches the head of the readable log (see tailMessages). */
  onCaughtUp?: () => void;
  /** Backstop poll when no notification arrives. Default 1000 ms. */
  pollMs?: number;
  /** Messages read per query: the most a slow reader holds in memory. Default 100. */
  batchSize?: number;
}

/**
 * One LISTEN connection per handle for every live follower: a follower subscribes to "new messages"
 * wake-ups instead of holding a connection of its own. Listening starts with the first follower and
 * stops after the last.
 */
export class WakeHub {
  #listeners = new Set<() => void>();
  #stop: AbortController | undefined;
  constructor(
    private readonly pool: pg.Pool,
    private readonly schema: string,
  ) {}

  subscribe = (onWake: () => void): (() => void) => {
    this.#listeners.add(onWake);
    if (!this.#stop) {
      const stop = new AbortController();
      this.#stop = stop;
      const wakeAll = () => {
        for (const l of this.#listeners) l();
      };
      void listenForWakeups(
        this.pool,
        this.schema,
        '',
        { onAppended: wakeAll, onCheckpoints: () => undefined, onConnected: wakeAll },
        stop.signal,
      );
    }
    return () => {
      this.#listeners.delete(onWake);
      if (this.#listeners.size === 0) this.close();
    };
  };

  close(): void {
    this.#stop?.abort();
    this.#stop = undefined;
  }
}

/** The follow's target for tailMessages, after checking the options. */
function targetOf(o: FollowOptions) {
  if (o.stream !== undefined && o.category !== undefined)
    throw new InvalidInputError('Follow a stream or a category, not both.');
  if (o.types !== undefined) assertTypeList(o.types);
  if (o.tags !== undefined) {
    assertTags(o.tags);
    if (o.stream !== undefined || o.category !== undefined)
      throw new InvalidInputError('tags go without stream and category (a query of types and tags).');
  }
  if (o.stream !== undefined) {
    assertStreamName(o.stream);
    return { stream: o.stream };
  }
  if (o.category !== undefined) {
    assertCategory(o.category);
    return { category: o.category };
  }
  if (o.tags?.length)
    return { query: Query.where({ tags: o.tags, ...(o.types?.length ? { types: o.types } : {}) }) };
  return { all: true as const };
}

function startOf(o: FollowOptions): TailStart {
  if (o.after !== undefined) return { after: parseLogPosition(o.after, 'event id (Last-Event-ID)') };
  if (o.from === undefined || o.from === 'end') return 'end';
  if (o.from === 'start') return { position: 0 };
  if (typeof o.from === 'number' && Number.isSafeInteger(o.from) && o.from >= 0) return { position: o.from };
  throw new InvalidInputError(
    `from must be "start", "end" or a global position, got ${JSON.stringify(o.from)}.`,
  );
}

/**
 * Follow messages live, gap-safe, in log order (a stream: in stream order): the same reader as
 * es tail. Pull-based: nothing is read from the database until the consumer asks for the next
 * message, so a slow consumer holds at most one batch. Checks its options at the call.
 */
export function follow(
  pool: pg.Pool,
  ctx: SqlContext,
  hub: WakeHub,
  o: FollowOptions,
): AsyncGenerator<MessageView, void, undefined> {
  const target = targetOf(o);
  const from = startOf(o);
  const messages = tailMessages(pool, ctx, {
    target,
    from,
    ...(o.types?.length && !('query' in target) ? { types: o.types } : {}),
    signal: o.signal,
    pollMs: o.pollMs ?? 1000,
    batchSize: o.batchSize ?? 100,
    wakeups: hub.subscribe,
    ...(o.onCaughtUp ? { onCaughtUp: o.onCaughtUp } : {}),
  });
  return (async function* () {
    for await (const m of messages) yield messageView(m);
  })();
}
