import { AppendConditionFailedError, InvalidInputError, WrongExpectedVersionError } from '../errors.js';
import type { ExpectedVersion, NewMessage } from '../store/types.js';
import { appendOutcomeUnknown } from './pendingErrors.js';

/**
 * What goes wrong with one call:
 * - `conflict`: WrongExpectedVersionError (another writer got there first), nothing written;
 * - `conditionFailed`: AppendConditionFailedError, nothing written;
 * - `lostReply`: the append is written, then its reply is lost (outcome unknown);
 * - `lostConnection`: the connection drops before the append arrives (outcome unknown, nothing written);
 * - `delay`: a slow append (`ms` before it runs);
 * - `error`: this error, nothing written.
 */
export type Fault =
  | { kind: 'conflict' }
  | { kind: 'conditionFailed' }
  | { kind: 'lostReply' }
  | { kind: 'lostConnection' }
  | { kind: 'delay'; ms: number }
  | { kind: 'error'; error: Error };

/**
 * The write methods a fault can hit. `prepareMessages` is what library functions writing through a
 * store call first (appendWithCondition(store, ...), scheduleMessage): faults there happen before
 * anything is written.
 */
export type FaultyMethod = 'append' | 'appendMultiple' | 'appendWithCondition' | 'prepareMessages';

export interface FaultyCall {
  method: FaultyMethod;
  streams: string[];
  /** The fault applied, if any. */
  fault: Fault | undefined;
}

export interface FaultyStore<T> {
  /** The store with faults injected (same type as the one wrapped; pass it where that one goes). */
  readonly store: T;
  /** Queue faults for the next calls of `method` ('any': whichever write method comes next). */
  failNext(method: FaultyMethod | 'any', ...faults: Fault[]): void;
  /** Every write call seen, with its fault. */
  readonly calls: readonly FaultyCall[];
  /** Faults queued and not used yet. */
  pending(): number;
}

type AnyFn = (...args: unknown[]) => unknown;

const WRITES = new Set<string>(['append', 'appendMultiple', 'appendWithCondition', 'prepareMessages']);

function streamsOf(
  method: FaultyMethod,
  args: unknown[],
): { streams: string[]; expected: ExpectedVersion[]; ids: string[] } {
  if (method === 'append') {
    const list = Array.isArray(args[1]) ? (args[1] as NewMessage[]) : [args[1] as NewMessage];
    const opts = args[2] as { expectedVersion?: ExpectedVersion } | undefined;
    return {
      streams: [args[0] as string],
      expected: [opts?.expectedVersion ?? 'any'],
      ids: list.map((m) => m?.id).filter((id): id is string => typeof id === 'string'),
    };
  }
  if (method === 'prepareMessages') return { streams: [], expected: [], ids: [] };
  const appends = (args[0] ?? []) as {
    stream: string;
    messages: NewMessage | NewMessage[];
    expectedVersion?: ExpectedVersion;
  }[];
  return {
    streams: appends.map((a) => a.stream),
    expected: appends.map((a) => a.expectedVersion ?? 'any'),
    ids: appends
      .flatMap((a) => (Array.isArray(a.messages) ? a.messages : [a.messages]))
      .map((m) => m?.id)
      .filter((id): id is string => typeof id === 'string'),
  };
}

/**
 * Wrap a store (the PostgreSQL MessageStore, the in-memory one, or a MessageStoreApi) so chosen
 * write calls fail the way production ones do: version conflicts, failed conditions, replies lost
 * after the write, connections lost before it, slow appends. For testing CommandExecutor retries
 * and handlers' error paths. Everything else passes straight through; `causedBy()` stores share
 * the queue.
 *
 * ```ts
 * const faulty = createFaultyStore(store);
 * faulty.failNext('append', { kind: 'conflict' });
 * const r = await new CommandExecutor(faulty.store).execute(decider, cmd, { stream });
 * expect(r.attempts).toBe(2);
 * ```
 */
export function createFaultyStore<T extends object>(store: T): FaultyStore<T> {
  const queue: { method: FaultyMethod | 'any'; fault: Fault }[] = [];
  const calls: FaultyCall[] = [];
  const take = (method: FaultyMethod): Fault | undefined => {
    const i = queue.findIndex(
      (q) => q.method === method || (q.method === 'any' && method !== 'prepareMessages'),
    );
    return i < 0 ? undefined : queue.splice(i, 1)[0]!.fault;
  };
  const wrap = (target: T): T =>
    new Proxy(target, {
      get(t, key) {
        // Private fields and getters need the real object as receiver.
        const value = Reflect.get(t, key, t);
        if (typeof value !== 'function') return value;
        const fn = (value as AnyFn).bind(t);
        if (key === 'causedBy') return (...args: unknown[]) => wrap(fn(...args) as T);
        if (typeof key !== 'string' || !WRITES.has(key)) return fn;
        const method = key as FaultyMethod;
        return async (...args: unknown[]) => {
          const fault = take(method);
          const { streams, expected, ids } = streamsOf(method, args);
          calls.push({ method, streams, fault });
          if (!fault) return fn(...args);
          switch (fault.kind) {
            case 'delay':
              await new Promise((r) => setTimeout(r, fault.ms));
              return fn(...args);
            case 'conflict':
              // Actual version unknown (-1): another writer took the position at the same time.
              throw new WrongExpectedVersionError(streams[0] ?? 'unknown', expected[0] ?? 'any', -1);
            case 'conditionFailed':
              throw new AppendConditionFailedError(undefined);
            case 'lostConnection':
              throw appendOutcomeUnknown(streams, ids);
            case 'lostReply': {
              if (method === 'prepareMessages')
                throw new InvalidInputError(
                  'A lostReply fault needs a write method (append, appendMultiple, appendWithCondition), not prepareMessages.',
                );
              await fn(...args);
              throw appendOutcomeUnknown(streams, ids);
            }
            case 'error':
              throw fault.error;
          }
        };
      },
    });
  return {
    store: wrap(store),
    failNext(method, ...faults) {
      for (const fault of faults) queue.push({ method, fault });
    },
    calls,
    pending: () => queue.length,
  };
}
