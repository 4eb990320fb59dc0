import assert from 'node:assert/strict';
import type { DecidedMessage, Decider } from '../consistency/decider.js';
import type { RecordedMessage } from '../store/types.js';
import { assertMessagesMatch } from './matchMessages.js';
import { type GivenMessage, recordedFrom } from './recordedFrom.js';

/** An error class to expect (any constructor of errors). */
export type ErrorClass<E extends Error = Error> = abstract new (...args: any[]) => E;

/** The outcome of a `when`: assert it with then(), thenThrows() or thenNothing(). */
export interface DeciderThen<State> {
  /**
   * The decider emits exactly these messages, in order. Each is compared on the fields it gives:
   * `{ type, data }` ignores stream, tags, metadata and ids; add them to check them too.
   */
  then(expected: DecidedMessage[] | ((messages: DecidedMessage[], state: State) => void)): Promise<void>;
  /** decide() throws an instance of `errorClass` (and, if given, `check` holds for it). */
  thenThrows<E extends Error>(errorClass: ErrorClass<E>, check?: (error: E) => void): Promise<void>;
  /** decide() emits nothing. */
  thenNothing(): Promise<void>;
}

export interface DeciderWhen<State, Command> {
  /** Decide `command` on the state built from the given messages. */
  when(command: Command): DeciderThen<State>;
}

export interface DeciderGiven<State, Command> extends DeciderWhen<State, Command> {
  /**
   * Messages already in the stream(s), folded with evolve() from initialState(). New messages
   * (`{ type, data }`, optionally `stream`) are given positions as a store would.
   */
  given(messages: GivenMessage[]): DeciderWhen<State, Command>;
  /** Start from this state instead of folding messages. */
  givenState(state: State): DeciderWhen<State, Command>;
}

/**
 * Given/when/then for deciders, without a store:
 *
 * ```ts
 * const spec = DeciderSpecification.for(courseDecider);
 * await spec.given([{ type: 'course_defined', data: { capacity: 1 } }])
 *   .when({ type: 'subscribe', student: 's1' })
 *   .then([{ type: 'student_subscribed', data: { student: 's1' } }]);
 * await spec.given([]).when(cmd).thenThrows(CourseNotFoundError);
 * ```
 *
 * Assertions throw node's AssertionError with a diff, so it works under any test runner.
 */
export const DeciderSpecification = {
  for<State, Command>(
    decider: Decider<State, Command>,
    opts: { stream?: string } = {},
  ): DeciderGiven<State, Command> {
    const stream = opts.stream ?? 'given-1';
    const whenOn =
      (state: () => State): DeciderWhen<State, Command>['when'] =>
      (command) =>
        thenFor(decider, state, command);
    const fold = (messages: RecordedMessage[]) => () =>
      messages.reduce((s, m) => decider.evolve(s, m), decider.initialState());
    return {
      given: (messages) => ({ when: whenOn(fold(recordedFrom(messages, stream))) }),
      givenState: (state) => ({ when: whenOn(() => state) }),
      when: whenOn(fold([])),
    };
  },
};

function thenFor<State, Command>(
  decider: Decider<State, Command>,
  state: () => State,
  command: Command,
): DeciderThen<State> {
  const run = async (): Promise<{ state: State; messages: DecidedMessage[] } | { error: unknown }> => {
    try {
      const s = state();
      const messages = await decider.decide(command, s);
      assert.ok(Array.isArray(messages), 'decide() must return an array of messages (empty for none).');
      return { state: s, messages };
    } catch (error) {
      return { error };
    }
  };
  const decided = async () => {
    const r = await run();
    if ('error' in r) throw r.error;
    return r;
  };
  return {
    // biome-ignore lint/suspicious/noThenProperty: the given/when/then vocabulary; never returned from an async function
    async then(expected) {
      const { state: s, messages } = await decided();
      if (typeof expected === 'function') expected(messages, s);
      else
        assertMessagesMatch(
          messages as unknown as Record<string, unknown>[],
          expected as unknown as Record<string, unknown>[],
          'The decided messages',
        );
    },
    async thenThrows(errorClass, check) {
      const r = await run();
      if (!('error' in r))
        assert.fail(
          `Expected decide() to throw ${errorClass.name}, but it returned ${JSON.stringify(r.messages.map((m) => m.type))}.`,
        );
      if (!(r.error instanceof errorClass)) {
        const e = r.error as Error;
        assert.fail(
          `Expected decide() to throw ${errorClass.name}, but it threw ${e?.constructor?.name ?? typeof e}: ${e?.message ?? String(e)}`,
        );
      }
      check?.(r.error);
    },
    async thenNothing() {
      const { messages } = await decided();
      assert.deepStrictEqual(
        messages.map((m) => m.type),
        [],
        'Expected decide() to emit nothing.',
      );
    },
  };
}
