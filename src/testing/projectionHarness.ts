import type { HandlerContext } from '../config/types.js';
import { inTransaction } from '../db/queryable.js';
import { InvalidInputError } from '../errors.js';
import { handlerEnqueue } from '../queues/enqueue.js';
import { handlerScheduling } from '../scheduling/scheduleMessage.js';
import type { MessageStore } from '../store/messageStore.js';
import type { RecordedMessage } from '../store/types.js';
import type { HarnessHandler, StreamMessage } from './handlerHarness.js';

export interface ProjectionOutcome {
  /** The handled messages as recorded (the given ones, then the `when` one). */
  messages: RecordedMessage[];
  /** What the handler threw on the `when` message (its transaction was rolled back), if anything. */
  error: unknown;
}

export interface ProjectionHarness {
  /**
   * Append the given messages, then `message`, to the PostgreSQL store and hand each to the
   * handler in its own transaction, as a transactional subscription does: `ctx.client` is the
   * transaction, `ctx.store` appends in it, a throw rolls everything back. A given message whose
   * handler throws fails the call. Then query your projection through the pool.
   */
  run(given: StreamMessage[], message: StreamMessage): Promise<ProjectionOutcome>;
}

/**
 * A harness for transactional handlers (projections) against a real PostgreSQL store, for when
 * the handler's SQL is what is being tested. The store's schema must be migrated (es migrate).
 */
export function createProjectionHarness(
  handler: HarnessHandler,
  opts: { store: MessageStore; group?: string; subscription?: string },
): ProjectionHarness {
  const { store } = opts;
  const subscription = opts.subscription ?? 'projection';
  const call = (message: RecordedMessage, ctx: HandlerContext) => {
    if (typeof handler === 'function') return handler(message, ctx);
    if (handler.handler) return handler.handler(message, ctx);
    if (handler.batchHandler) return handler.batchHandler([message], ctx);
    throw new InvalidInputError(
      'The harness needs a handler function or a subscription with handler or batchHandler.',
    );
  };
  const record = async (m: StreamMessage): Promise<RecordedMessage> => {
    const { stream, ...rest } = m;
    const { streamVersion } = await store.append(stream, rest);
    const [recorded] = await store.readStream(stream, { from: streamVersion, limit: 1 });
    if (!recorded) throw new Error(`The message just appended to "${stream}" could not be read back.`);
    return recorded;
  };
  const project = (recorded: RecordedMessage) =>
    inTransaction(store.pool, async (client) => {
      const s = handlerScheduling(store, recorded, { subscription, client });
      await call(recorded, {
        store: store.withTransaction(client).causedBy(recorded),
        signal: new AbortController().signal,
        client,
        group: opts.group ?? 'test',
        subscription,
        attempt: 1,
        schedule: (target, message, when) => s.schedule(target, message, when),
        cancelScheduled: (id) => s.cancelScheduled(id),
        enqueue: handlerEnqueue(store, recorded, { who: subscription, client }),
      });
    });
  return {
    async run(given, message) {
      const messages: RecordedMessage[] = [];
      for (const m of given) {
        const recorded = await record(m);
        await project(recorded);
        messages.push(recorded);
      }
      const recorded = await record(message);
      messages.push(recorded);
      try {
        await project(recorded);
        return { messages, error: undefined };
      } catch (error) {
        return { messages, error };
      }
    },
  };
}
