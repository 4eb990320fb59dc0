import type { HandlerContext } from '../config/types.js';
import { InvalidInputError } from '../errors.js';
import { idFromKey } from '../scheduling/scheduleMessage.js';
import type { MessageStore } from '../store/messageStore.js';
import type { RecordedMessage } from '../store/types.js';
import type { InMemoryMessageStore } from './inMemoryStore.js';

const POSTGRES_ONLY = new Set(['pool', 'sqlContext', 'schema', 'writer']);

/*
 * ctx.store is typed as the PostgreSQL MessageStore; here it is the in-memory one. What has no
 * in-memory meaning (its pool, its SQL context) throws when touched rather than misbehaving later.
 */
function contextStore(store: InMemoryMessageStore): MessageStore {
  return new Proxy(store, {
    get(target, key) {
      if (typeof key === 'string' && POSTGRES_ONLY.has(key))
        throw new InvalidInputError(
          `ctx.store.${key} is not available here: the store is in memory.`,
          'Test handlers that use the PostgreSQL store directly (or library functions taking it) against PostgreSQL.',
        );
      const value = Reflect.get(target, key, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  }) as unknown as MessageStore;
}

/** What a handler did with its context's scheduling. */
export interface ContextEffects {
  scheduled: string[];
  cancelled: { id: string; wasPending: boolean }[];
  /** Jobs the handler enqueued (the in-memory store keeps no queues: assert on these). */
  enqueued: { queue: string; id: string; type: string; data: unknown; key?: string; delay?: number }[];
}

/**
 * A handler's context on the in-memory store, as the worker builds it: appends caused by the
 * handled message, and scheduling as handlerScheduling() does (inherited correlation, and the
 * n-th message a call schedules without an id gets one derived from the call, so a retry
 * schedules it once).
 */
export function inMemoryContext(
  store: InMemoryMessageStore,
  cause: RecordedMessage,
  opts: { group: string; subscription: string; attempt: number; signal?: AbortSignal },
): { context: HandlerContext; effects: ContextEffects } {
  const effects: ContextEffects = { scheduled: [], cancelled: [], enqueued: [] };
  let jobs = 0;
  let n = 0;
  const context: HandlerContext = {
    store: contextStore(store.causedBy(cause)),
    signal: opts.signal ?? new AbortController().signal,
    client: undefined,
    group: opts.group,
    subscription: opts.subscription,
    attempt: opts.attempt,
    async schedule(stream, message, when) {
      n += 1;
      const id = message.id ?? idFromKey(`beckett.schedule:${opts.subscription}:${cause.id}:${n}`);
      const metadata = {
        correlationId: cause.metadata.correlationId ?? cause.id,
        causationId: cause.id,
        ...message.metadata,
      };
      const scheduled = await store.schedule(stream, { ...message, id, metadata }, when);
      effects.scheduled.push(scheduled);
      return scheduled;
    },
    async cancelScheduled(id) {
      const wasPending = await store.cancelScheduled(id);
      effects.cancelled.push({ id, wasPending });
      return wasPending;
    },
    async enqueue(queue, message, enqueueOpts = {}) {
      jobs += 1;
      const id = enqueueOpts.id ?? idFromKey(`beckett.enqueue:${opts.subscription}:${cause.id}:${jobs}`);
      effects.enqueued.push({ queue, id, type: message.type, data: message.data, ...enqueueOpts });
      return id;
    },
  };
  return { context, effects };
}
