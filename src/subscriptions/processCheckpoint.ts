import type pg from 'pg';
import type { HandlerContext, MessageDefinition, ResolvedSubscription } from '../config/types.js';
import type { SqlContext } from '../db/queryable.js';
import { BeckettError, toError } from '../errors.js';
import type { MessageStore } from '../store/messageStore.js';
import { readStream } from '../store/readStream.js';
import type { Metadata, RecordedMessage } from '../store/types.js';
import {
  type ClaimedCheckpoint,
  completeCheckpoint,
  extendLease,
  failCheckpoint,
} from './claimCheckpoint.js';
import { connectGuarded } from './guardPool.js';
import { describeError, retriesExhausted, retryDelayMs } from './retryPolicy.js';

/** A message of a type not declared under `messages`, for a subscription with onUnmappedType 'fail'. */
export class UnmappedMessageTypeError extends BeckettError {
  constructor(type: string, subscription: string) {
    super('UNMAPPED_MESSAGE_TYPE', `Message type "${type}" is not declared under messages in the config.`, {
      hint: `Declare it, or set onUnmappedType: 'skip' or 'raw' on subscription "${subscription}".`,
    });
  }
}

export interface ProcessDeps {
  pool: pg.Pool;
  ctx: SqlContext;
  store: MessageStore;
  sub: ResolvedSubscription;
  messages: Record<string, MessageDefinition>;
  leaseMs: number;
  /** The worker's signal: aborted when it drains. */
  signal: AbortSignal;
}

export interface ProcessResult {
  /** Messages handed to the handler (or skipped as unmapped) and recorded as done. */
  handled: number;
  /** The checkpoint's position after this claim. */
  position: number;
  /** The handler error that put the checkpoint in retry or failed. */
  error?: Error;
  status: 'done' | 'retry' | 'failed' | 'drained' | 'lease-lost';
  attempt: number;
}

type Prepared = { message: RecordedMessage; deliver: boolean };

/** Which messages the subscription gets, and how (upcast, raw or skipped), in stream order. */
function prepare(deps: ProcessDeps, read: RecordedMessage[]): Prepared[] {
  const declared = Object.keys(deps.messages).length > 0;
  return read.map((message) => {
    if (deps.sub.types && !deps.sub.types.includes(message.type)) return { message, deliver: false };
    const def = deps.messages[message.type];
    if (declared && !def) {
      if (deps.sub.onUnmappedType === 'skip') return { message, deliver: false };
      if (deps.sub.onUnmappedType === 'fail') return { message, deliver: true };
    }
    return { message, deliver: true };
  });
}

function deliverable(deps: ProcessDeps, message: RecordedMessage): RecordedMessage {
  const declared = Object.keys(deps.messages).length > 0;
  const def = deps.messages[message.type];
  if (declared && !def && deps.sub.onUnmappedType === 'fail')
    throw new UnmappedMessageTypeError(message.type, deps.sub.name);
  // Upcasting here, not at read, so a throwing upcaster is this message's failure.
  if (def?.upcast) return { ...message, data: def.upcast(message.data, message.metadata as Metadata) };
  return message;
}

/**
 * Handle one claimed checkpoint: read its stream after stream_position, call the handler in order,
 * record progress (or the failure) and drop the lease. The lease is extended while handlers run;
 * once it is found lost, nothing more is handled or written.
 */
export async function processCheckpoint(
  deps: ProcessDeps,
  claim: ClaimedCheckpoint & { messages?: RecordedMessage[] },
): Promise<ProcessResult> {
  const { pool, ctx, sub } = deps;
  const read =
    claim.messages ??
    (await readStream(pool, ctx, claim.stream, { from: claim.streamPosition + 1, limit: sub.batchSize }));
  if (read.length === 0) {
    // The messages the checkpoint points at are gone (retention, manual delete): nothing to handle.
    await completeCheckpoint(pool, ctx, claim, claim.streamVersion);
    return { handled: 0, position: claim.streamVersion, status: 'done', attempt: claim.attempts + 1 };
  }
  const items = prepare(deps, read);

  const lease = new AbortController();
  const signal = AbortSignal.any([deps.signal, lease.signal]);
  let leaseLost = false;
  const extender = setInterval(
    () => {
      extendLease(pool, ctx, claim, deps.leaseMs).then(
        (ours) => {
          if (!ours) {
            leaseLost = true;
            lease.abort();
          }
        },
        () => undefined, // the server is away: the next tick or the final write will tell
      );
    },
    Math.max(50, Math.floor(deps.leaseMs / 3)),
  );
  try {
    return sub.transactional
      ? await runTransactional(deps, claim, items, signal, () => leaseLost)
      : await runDirect(deps, claim, items, signal, () => leaseLost);
  } finally {
    clearInterval(extender);
  }
}

function handlerContext(
  deps: ProcessDeps,
  store: MessageStore,
  signal: AbortSignal,
  client: pg.PoolClient | undefined,
  attempt: number,
): HandlerContext {
  return { store, signal, client, group: deps.sub.group, subscription: deps.sub.name, attempt };
}

/**
 * Call the subscription's handler over the claimed items, in stream order: the batch handler once
 * with the deliverable messages, or the handler message by message until the claim is aborted.
 * Returns how far it got; a throw is returned as `failure` (what was handled before it counts).
 */
async function callHandlers(
  deps: ProcessDeps,
  items: Prepared[],
  signal: AbortSignal,
  leaseLost: () => boolean,
  on: {
    store: MessageStore;
    client: pg.PoolClient | undefined;
    attemptFor: (m: RecordedMessage) => number;
    /** Do not start a batch handler once the claim is aborted (the direct path). */
    checkBeforeBatch: boolean;
  },
  from: number,
): Promise<{ position: number; handled: number; failure: Error | undefined }> {
  const { sub } = deps;
  let position = from;
  let handled = 0;
  try {
    if (sub.batchHandler) {
      if (on.checkBeforeBatch && (signal.aborted || leaseLost())) throw signal.reason ?? new Error('aborted');
      const batch = items.filter((i) => i.deliver).map((i) => deliverable(deps, i.message));
      if (batch.length > 0)
        await sub.batchHandler(
          batch as never,
          handlerContext(
            deps,
            on.store.causedBy(batch[0]!),
            signal,
            on.client,
            on.attemptFor(items[0]!.message),
          ),
        );
      position = items[items.length - 1]!.message.streamPosition;
      handled = items.length;
    } else {
      for (const { message, deliver } of items) {
        if (signal.aborted || leaseLost()) break;
        if (deliver) {
          const m = deliverable(deps, message);
          await sub.handler!(
            m as never,
            handlerContext(deps, on.store.causedBy(m), signal, on.client, on.attemptFor(message)),
          );
        }
        position = message.streamPosition;
        handled++;
      }
    }
    return { position, handled, failure: undefined };
  } catch (err) {
    return { position, handled, failure: toError(err) };
  }
}

async function runDirect(
  deps: ProcessDeps,
  claim: ClaimedCheckpoint,
  items: Prepared[],
  signal: AbortSignal,
  leaseLost: () => boolean,
): Promise<ProcessResult> {
  const { pool, ctx, sub } = deps;
  const attemptFor = (m: RecordedMessage) =>
    m.streamPosition === claim.streamPosition + 1 ? claim.attempts + 1 : 1;
  const { position, handled, failure } = await callHandlers(
    deps,
    items,
    signal,
    leaseLost,
    { store: deps.store, client: undefined, attemptFor, checkBeforeBatch: true },
    claim.streamPosition,
  );
  if (leaseLost()) return { handled, position, status: 'lease-lost', attempt: claim.attempts + 1 };
  if (failure && !deps.signal.aborted) {
    const attempts = position > claim.streamPosition ? 1 : claim.attempts + 1;
    const failed = retriesExhausted(attempts, sub.maxRetries);
    await failCheckpoint(pool, ctx, claim, {
      position,
      status: failed ? 'failed' : 'retry',
      attempts,
      error: describeError(failure, attempts),
      delayMs: failed ? 0 : retryDelayMs(attempts, sub.backoff),
    });
    return { handled, position, error: failure, status: failed ? 'failed' : 'retry', attempt: attempts };
  }
  // A handler that gave up because the worker is draining is not a failure: keep what was done.
  await completeCheckpoint(pool, ctx, claim, position);
  const drained = failure !== undefined || position < items[items.length - 1]!.message.streamPosition;
  return { handled, position, status: drained ? 'drained' : 'done', attempt: claim.attempts + 1 };
}

async function runTransactional(
  deps: ProcessDeps,
  claim: ClaimedCheckpoint,
  items: Prepared[],
  signal: AbortSignal,
  leaseLost: () => boolean,
): Promise<ProcessResult> {
  const { pool, ctx, sub } = deps;
  const client = await connectGuarded(pool);
  let broken: Error | undefined;
  const attempt = claim.attempts + 1;
  let failure: Error | undefined;
  try {
    await client.query('BEGIN');
    const run = await callHandlers(
      deps,
      items,
      signal,
      leaseLost,
      {
        store: deps.store.withTransaction(client),
        client,
        attemptFor: () => attempt,
        checkBeforeBatch: false,
      },
      claim.streamPosition,
    );
    const { position, handled } = run;
    failure = run.failure;
    // The checkpoint advances in the handler's transaction, conditional on the lease: if the lease
    // was lost, nothing the handler wrote is kept, so each message counts exactly once.
    if (!failure && !leaseLost() && position > claim.streamPosition) {
      if (await completeCheckpoint(client, ctx, claim, position)) {
        await client.query('COMMIT');
        deps.store.notify();
        const drained = position < items[items.length - 1]!.message.streamPosition;
        return { handled, position, status: drained ? 'drained' : 'done', attempt };
      }
      await client.query('ROLLBACK');
      return { handled: 0, position: claim.streamPosition, status: 'lease-lost', attempt };
    }
    await client.query('ROLLBACK');
  } catch (err) {
    broken = toError(err);
    throw err;
  } finally {
    client.release(broken);
  }
  if (leaseLost()) return { handled: 0, position: claim.streamPosition, status: 'lease-lost', attempt };
  if (failure && !deps.signal.aborted) {
    // The whole batch rolled back: the next attempt starts again after stream_position.
    const failed = retriesExhausted(attempt, sub.maxRetries);
    await failCheckpoint(pool, ctx, claim, {
      position: claim.streamPosition,
      status: failed ? 'failed' : 'retry',
      attempts: attempt,
      error: describeError(failure, attempt),
      delayMs: failed ? 0 : retryDelayMs(attempt, sub.backoff),
    });
    return {
      handled: 0,
      position: claim.streamPosition,
      error: failure,
      status: failed ? 'failed' : 'retry',
      attempt,
    };
  }
  await completeCheckpoint(pool, ctx, claim, claim.streamPosition);
  return { handled: 0, position: claim.streamPosition, status: 'drained', attempt };
}
