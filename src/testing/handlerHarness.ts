import assert from 'node:assert/strict';
import type { HandlerContext, MessageDefinition } from '../config/types.js';
import { InvalidInputError } from '../errors.js';
import type { NewMessage, RecordedMessage } from '../store/types.js';
import type { ErrorClass } from './deciderSpecification.js';
import { inMemoryContext } from './inMemoryContext.js';
import {
  createInMemoryStore,
  type InMemoryMessageStore,
  type InMemoryScheduledMessage,
} from './inMemoryStore.js';
import { assertMessagesMatch } from './matchMessages.js';

/** A message in a given stream (what `given` and `when` take). */
export type StreamMessage = NewMessage & { stream: string };

type AnyMessage = any;

/** A handler, or a subscription's config with `handler` or `batchHandler`. */
export type HarnessHandler =
  | ((message: AnyMessage, ctx: HandlerContext) => Promise<void> | void)
  | {
      handler?: (message: AnyMessage, ctx: HandlerContext) => Promise<void> | void;
      batchHandler?: (messages: AnyMessage[], ctx: HandlerContext) => Promise<void> | void;
    };

export interface HandlerHarnessOptions {
  /** The store to run on (default: a new in-memory store). Its clock dates scheduled messages. */
  store?: InMemoryMessageStore;
  /** Message type mappings for a new store (validators on append, upcasters on read). */
  messages?: Record<string, MessageDefinition>;
  /** Names in the context (and in the ids of scheduled messages). Defaults `test` and `handler`. */
  group?: string;
  subscription?: string;
  /** The context's `attempt` (default 1): test a handler's retry path. */
  attempt?: number;
}

/** What a handler call did. */
export interface HandlerOutcome {
  /** The handled message as recorded. */
  message: RecordedMessage;
  /** Messages appended during the call, in log order (any stream). */
  appended: RecordedMessage[];
  /** Messages it scheduled (still pending after the call). */
  scheduled: InMemoryScheduledMessage[];
  /** Ids it cancelled (true when they were pending). */
  cancelled: { id: string; wasPending: boolean }[];
  /** The context it was called with. */
  context: HandlerContext;
  /** What it threw, if anything. */
  error: unknown;
}

/** Expected effects: each message compared on the fields it gives (see DeciderSpecification.then). */
export interface ExpectedEffects {
  appended?: Partial<StreamMessage & { streamName: string }>[];
  scheduled?: Partial<InMemoryScheduledMessage>[];
  cancelled?: string[];
}

export interface HandlerThen {
  /** The call succeeded with these effects (unlisted kinds are not checked). */
  then(expected: ExpectedEffects): Promise<HandlerOutcome>;
  /** The handler threw an instance of `errorClass`. */
  thenThrows<E extends Error>(errorClass: ErrorClass<E>, check?: (error: E) => void): Promise<HandlerOutcome>;
  /** The call's outcome, to assert yourself. */
  outcome(): Promise<HandlerOutcome>;
}

export interface HandlerWhen {
  /** Append `message` to its stream, then call the handler with it as recorded. */
  when(message: StreamMessage): HandlerThen;
  /** The store the harness runs on (read it after a call). */
  readonly store: InMemoryMessageStore;
}

export interface HandlerHarness extends HandlerWhen {
  /** Messages already in the store before the handled one. */
  given(messages: StreamMessage[]): HandlerWhen;
}

/**
 * A harness for one handler: given messages in an in-memory store, when a message is handled,
 * then these messages were appended and scheduled.
 *
 * ```ts
 * await createHandlerHarness(paymentSaga)
 *   .given([{ stream: 'order-1', type: 'order_placed', data: { orderId: '1' } }])
 *   .when({ stream: 'order-1', type: 'payment_received', data: { orderId: '1' } })
 *   .then({ appended: [], cancelled: [paymentTimeoutId('1')] });
 * ```
 */
export function createHandlerHarness(
  handler: HarnessHandler,
  opts: HandlerHarnessOptions = {},
): HandlerHarness {
  const store = opts.store ?? createInMemoryStore(opts.messages ? { messages: opts.messages } : {});
  const subscription = opts.subscription ?? 'handler';
  const call = async (message: RecordedMessage, ctx: HandlerContext) => {
    if (typeof handler === 'function') return handler(message, ctx);
    if (handler.handler) return handler.handler(message, ctx);
    if (handler.batchHandler) return handler.batchHandler([message], ctx);
    throw new InvalidInputError(
      'The harness needs a handler function or a subscription with handler or batchHandler.',
    );
  };
  // Objects with a then() method are never returned from an async function (they would be awaited).
  const when = (message: StreamMessage, given?: () => Promise<void>): HandlerThen => {
    let running: Promise<HandlerOutcome> | undefined;
    const outcome = () => {
      running ??= (async () => {
        await given?.();
        const { stream, ...rest } = message;
        const { globalPosition } = await store.append(stream, rest);
        const [recorded] = await store.readStream(stream, {
          from: await store.streamVersion(stream),
          limit: 1,
        });
        if (!recorded || recorded.globalPosition !== globalPosition)
          throw new Error('The handled message could not be read back from the store.');
        const before = new Set(store.listScheduled().map((s) => s.id));
        const { context, effects } = inMemoryContext(store, recorded, {
          group: opts.group ?? 'test',
          subscription,
          attempt: opts.attempt ?? 1,
        });
        let error: unknown;
        try {
          await call(recorded, context);
        } catch (err) {
          error = err;
        }
        const appended: RecordedMessage[] = [];
        for (
          let after = { transactionId: recorded.transactionId, globalPosition: recorded.globalPosition };
          ;
        ) {
          const page = await store.readAll({ after });
          appended.push(...page.messages);
          if (page.messages.length === 0) break;
          after = page.position;
        }
        const scheduled = store
          .listScheduled()
          .filter((s) => !before.has(s.id) || effects.scheduled.includes(s.id));
        return { message: recorded, appended, scheduled, cancelled: effects.cancelled, context, error };
      })();
      return running;
    };
    return {
      // biome-ignore lint/suspicious/noThenProperty: the given/when/then vocabulary; never returned from an async function
      async then(expected) {
        const o = await outcome();
        if (o.error !== undefined) throw o.error;
        if (expected.appended)
          assertMessagesMatch(
            o.appended.map((m) => ({ ...m, stream: m.streamName })) as unknown as Record<string, unknown>[],
            expected.appended as Record<string, unknown>[],
            'The appended messages',
          );
        if (expected.scheduled)
          assertMessagesMatch(
            o.scheduled as unknown as Record<string, unknown>[],
            expected.scheduled as Record<string, unknown>[],
            'The scheduled messages',
          );
        if (expected.cancelled)
          assert.deepStrictEqual(
            o.cancelled.map((c) => c.id),
            expected.cancelled.map((id) => id.toLowerCase()),
            'The cancelled scheduled messages differ from the expected ones.',
          );
        return o;
      },
      async thenThrows(errorClass, check) {
        const o = await outcome();
        if (o.error === undefined)
          assert.fail(`Expected the handler to throw ${errorClass.name}, but it returned.`);
        if (!(o.error instanceof errorClass)) {
          const e = o.error as Error;
          assert.fail(
            `Expected the handler to throw ${errorClass.name}, but it threw ${e?.constructor?.name ?? typeof e}: ${e?.message ?? String(e)}`,
          );
        }
        check?.(o.error);
        return o;
      },
      outcome,
    };
  };
  return {
    store,
    when: (message) => when(message),
    given(messages) {
      let ready: Promise<void> | undefined;
      const prepare = () => {
        ready ??= (async () => {
          for (const { stream, ...m } of messages) await store.append(stream, m);
        })();
        return ready;
      };
      return { store, when: (message) => when(message, prepare) };
    },
  };
}
