import type { ResolvedConfig, ResolvedSubscription } from '../config/types.js';
import { InvalidInputError, toError } from '../errors.js';
import { LOG_START, type LogPosition, type RecordedMessage } from '../store/types.js';
import { UnmappedMessageTypeError } from '../subscriptions/processCheckpoint.js';
import {
  describeError,
  retriesExhausted,
  retryDelayMs,
  type StoredError,
} from '../subscriptions/retryPolicy.js';
import { findGroup } from '../subscriptions/workerRuntime.js';
import { inMemoryContext } from './inMemoryContext.js';
import type { InMemoryMessageStore } from './inMemoryStore.js';

/** One stream's progress in one subscription, as the checkpoints table holds it. */
export interface InMemoryCheckpoint {
  subscription: string;
  stream: string;
  /** The stream's last position seen by the reader. */
  streamVersion: number;
  /** The last position processed. */
  streamPosition: number;
  status: 'active' | 'retry' | 'failed';
  /** Failures in a row at the current position. */
  attempts: number;
  nextAttemptAt: Date | undefined;
  lastError: StoredError | undefined;
}

export interface InMemorySubscriptionsOptions {
  store: InMemoryMessageStore;
  /** The resolved config (resolveConfig or loadConfig): its group's subscriptions and message types. */
  config: ResolvedConfig;
  group: string;
  /** Jitter source of the retry backoff (default Math.random; `() => 1` for the full delay). */
  random?: () => number;
  /** Also deliver scheduled messages that are due on each run (default true). */
  deliverScheduled?: boolean;
}

export interface RunResult {
  /** Messages handed to handlers (or skipped) and recorded in this run. */
  processed: number;
  /** Handler calls that threw. */
  failures: number;
}

export interface InMemorySubscriptions {
  /**
   * Process everything due now on the store's clock: dispatch new log messages to their streams'
   * checkpoints, then handle every lagging checkpoint that is not waiting for a retry, until
   * nothing is left (handlers' own appends included). Advance the clock and run again for retries
   * and scheduled messages.
   */
  run(): Promise<RunResult>;
  /** Every checkpoint (optionally of one subscription). */
  checkpoints(subscription?: string): InMemoryCheckpoint[];
  /** Put a failed or retrying checkpoint back to be handled on the next run (es retry). */
  retry(subscription: string, stream: string): void;
  /** Skip the message a failed or retrying checkpoint is stuck on (es skip). */
  skip(subscription: string, stream: string): void;
}

/**
 * A config's group run against the in-memory store with the worker's rules: each stream in
 * order per subscription, a throwing handler retries only its stream with exponential backoff on
 * the store's clock and fails after maxRetries, other streams keep flowing, batch handlers get up
 * to batchSize messages, unmapped types follow onUnmappedType. Deterministic: nothing runs
 * until run() is called. Transactional subscriptions are refused (they need a PostgreSQL client).
 */
export function createInMemorySubscriptions(opts: InMemorySubscriptionsOptions): InMemorySubscriptions {
  const { store, config } = opts;
  const group = findGroup(config, opts.group);
  const subs = [...group.subscriptions.values()];
  for (const sub of subs)
    if (sub.transactional)
      throw new InvalidInputError(
        `Subscription "${sub.name}" is transactional: its handler runs in a PostgreSQL transaction, which the in-memory store cannot give.`,
        'Test it against PostgreSQL (a worker on a test schema and waitForCaughtUp), or test its handler with the handler harness.',
      );
  // The store upcasts at read: handlers see what a worker shows them only if it has the config's upcasters.
  for (const [type, def] of Object.entries(config.messages))
    if (def.upcast && store.messageDefinitions[type]?.upcast !== def.upcast)
      throw new InvalidInputError(
        `Message type "${type}" has an upcaster in the config that the in-memory store does not use.`,
        "Create the store with the config's message types: createInMemoryStore({ messages: config.messages }).",
      );
  const random = opts.random ?? Math.random;
  const declared = Object.keys(config.messages).length > 0;
  // Each subscription's place in the log, and its checkpoints by stream.
  const positions = new Map<string, LogPosition | 'end'>(
    subs.map((s) => [s.name, s.startFrom === 'end' ? 'end' : LOG_START]),
  );
  const checkpoints = new Map<string, Map<string, InMemoryCheckpoint>>(subs.map((s) => [s.name, new Map()]));

  const matches = (sub: ResolvedSubscription, m: RecordedMessage) =>
    (!sub.types || sub.types.includes(m.type)) &&
    (!sub.category || m.streamName.split('-', 1)[0] === sub.category) &&
    (!sub.stream || m.streamName === sub.stream);

  async function dispatch(): Promise<void> {
    for (const sub of subs) {
      let at = positions.get(sub.name)!;
      if (at === 'end') {
        // A new subscription starting at the end: everything already written is not its business.
        at = LOG_START;
        for (;;) {
          const page = await store.readAll({ after: at, limit: 10_000 });
          if (page.messages.length === 0) break;
          at = page.position;
        }
        positions.set(sub.name, at);
        continue;
      }
      // A new checkpoint starts just before its stream's first message after the subscription's
      // position (matching or not), as the global reader does: earlier ones are not its business.
      const firstAfter = new Map<string, number>();
      for (;;) {
        const page = await store.readAll({ after: at, limit: 1000 });
        for (const m of page.messages) {
          if (!firstAfter.has(m.streamName)) firstAfter.set(m.streamName, m.streamPosition);
          if (!matches(sub, m)) continue;
          const cps = checkpoints.get(sub.name)!;
          const cp = cps.get(m.streamName);
          if (cp) cp.streamVersion = Math.max(cp.streamVersion, m.streamPosition);
          else
            cps.set(m.streamName, {
              subscription: sub.name,
              stream: m.streamName,
              streamVersion: m.streamPosition,
              streamPosition: firstAfter.get(m.streamName)! - 1,
              status: 'active',
              attempts: 0,
              nextAttemptAt: undefined,
              lastError: undefined,
            });
        }
        at = page.position;
        if (page.messages.length === 0) break;
      }
      positions.set(sub.name, at);
    }
  }

  const due = (cp: InMemoryCheckpoint) =>
    cp.streamPosition < cp.streamVersion &&
    (cp.status === 'active' ||
      (cp.status === 'retry' && cp.nextAttemptAt !== undefined && cp.nextAttemptAt <= store.clock.now()));

  /** One claim of one checkpoint: up to batchSize messages, in order; a throw stops at that message. */
  async function processOne(sub: ResolvedSubscription, cp: InMemoryCheckpoint): Promise<RunResult> {
    const read = await store.readStream(cp.stream, { from: cp.streamPosition + 1, limit: sub.batchSize });
    const attemptFor = (m: RecordedMessage) =>
      m.streamPosition === cp.streamPosition + 1 ? cp.attempts + 1 : 1;
    const deliver = (m: RecordedMessage) => {
      if (sub.types && !sub.types.includes(m.type)) return false;
      if (declared && !config.messages[m.type] && sub.onUnmappedType === 'skip') return false;
      return true;
    };
    const check = (m: RecordedMessage) => {
      if (declared && !config.messages[m.type] && sub.onUnmappedType === 'fail')
        throw new UnmappedMessageTypeError(m.type, sub.name);
      return m;
    };
    const ctxFor = (m: RecordedMessage) =>
      inMemoryContext(store, m, { group: group.name, subscription: sub.name, attempt: attemptFor(m) })
        .context;
    const from = cp.streamPosition;
    let position = from;
    let failure: Error | undefined;
    try {
      if (sub.batchHandler) {
        const batch = read.filter(deliver).map(check);
        if (batch.length > 0) await sub.batchHandler(batch as never, ctxFor(batch[0]!));
        position = read[read.length - 1]?.streamPosition ?? position;
      } else {
        for (const m of read) {
          if (deliver(m)) await sub.handler!(check(m) as never, ctxFor(m));
          position = m.streamPosition;
        }
      }
    } catch (err) {
      failure = toError(err);
    }
    const processed = position - from;
    if (read.length === 0) position = cp.streamVersion;
    cp.streamPosition = position;
    if (!failure) {
      cp.status = 'active';
      cp.attempts = 0;
      cp.nextAttemptAt = undefined;
      return { processed, failures: 0 };
    }
    const attempts = position > from ? 1 : cp.attempts + 1;
    const failed = retriesExhausted(attempts, sub.maxRetries);
    cp.attempts = attempts;
    cp.status = failed ? 'failed' : 'retry';
    cp.lastError = describeError(failure, attempts);
    cp.nextAttemptAt = failed
      ? undefined
      : new Date(store.clock.now().getTime() + retryDelayMs(attempts, sub.backoff, random));
    return { processed, failures: 1 };
  }

  const find = (subscription: string, stream: string) => {
    const cp = checkpoints.get(subscription)?.get(stream);
    if (!cp)
      throw new InvalidInputError(`No checkpoint for subscription "${subscription}" and stream "${stream}".`);
    return cp;
  };

  return {
    async run() {
      const total: RunResult = { processed: 0, failures: 0 };
      for (;;) {
        if (opts.deliverScheduled ?? true) await store.deliverDue();
        await dispatch();
        let progressed = false;
        for (const sub of subs)
          for (const cp of checkpoints.get(sub.name)!.values()) {
            if (!due(cp)) continue;
            const r = await processOne(sub, cp);
            total.processed += r.processed;
            total.failures += r.failures;
            progressed = true;
          }
        if (!progressed) return total;
      }
    },
    checkpoints(subscription) {
      return [...checkpoints]
        .filter(([name]) => subscription === undefined || name === subscription)
        .flatMap(([, cps]) => [...cps.values()].map((cp) => ({ ...cp })));
    },
    retry(subscription, stream) {
      const cp = find(subscription, stream);
      cp.status = 'active';
      cp.attempts = 0;
      cp.nextAttemptAt = undefined;
    },
    skip(subscription, stream) {
      const cp = find(subscription, stream);
      cp.streamPosition = Math.min(cp.streamPosition + 1, cp.streamVersion);
      cp.status = 'active';
      cp.attempts = 0;
      cp.nextAttemptAt = undefined;
    },
  };
}
