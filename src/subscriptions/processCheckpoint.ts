import type pg from 'pg';
import type { MessageDefinition, ResolvedSubscription, WorkerHandlerContext } from '../config/types.js';
import type { SqlContext } from '../db/queryable.js';
import { BeckettError, toError } from '../errors.js';
import type { MessageStore } from '../store/messageStore.js';
import type { Metadata, RecordedMessage } from '../store/types.js';
import {
  boundHandlerCall,
  HandlerAbandonedError,
  HandlerTimeoutError,
  isAbandoned,
} from './boundHandlerCall.js';
import { type ClaimedCheckpoint, completeCheckpoint, failCheckpoint } from './claimCheckpoint.js';
import { connectGuarded } from './guardPool.js';
import { HeldLease } from './holdLease.js';
import { type ClaimedBatch, readClaimedBatch } from './readClaimedBatch.js';
import { describeError, retriesExhausted, retryDelayMs } from './retryPolicy.js';
import { streamInFilter } from './subscriptionDefinition.js';

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
  /** Aborted when the worker's drain timeout has passed: handlers still running are abandoned. */
  force?: AbortSignal;
  /**
   * How a direct (not transactional) claim records its progress and drops its lease; default
   * completeCheckpoint on the pool. The worker shares one batched writer among its consumers.
   */
  complete?: (claim: ClaimedCheckpoint, position: number) => Promise<boolean>;
  /**
   * A read replica for claims made without their messages (catch-up, see ClaimArgs): the batch is
   * read there when the replica has replayed the stream up to the checkpoint's version.
   */
  readPool?: pg.Pool;
  /** Where a batch the claim did not carry was read from (for the worker's stats). */
  onBatchRead?: (from: ClaimedBatch['from']) => void;
  /** The replica failed a read (the primary answered instead). */
  onReplicaError?: (err: unknown) => void;
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
  /** A handler was left running: it timed out, or the drain timeout passed. */
  abandoned?: boolean;
}

type Prepared = { message: RecordedMessage; deliver: boolean };

const completeDirect = (deps: ProcessDeps, claim: ClaimedCheckpoint, position: number): Promise<boolean> =>
  deps.complete ? deps.complete(claim, position) : completeCheckpoint(deps.pool, deps.ctx, claim, position);

/** Which messages the subscription gets, and how (upcast, raw or skipped), in stream order. */
function prepare(deps: ProcessDeps, read: RecordedMessage[]): Prepared[] {
  const declared = Object.keys(deps.messages).length > 0;
  // A checkpoint dispatched under an earlier definition of the subscription (a rolling deploy
  // changed its category or stream) is passed, never handed to this definition's handler.
  const inFilter = read[0] === undefined || streamInFilter(deps.sub, read[0].streamName);
  return read.map((message) => {
    if (!inFilter) return { message, deliver: false };
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
 * once it is lost, or its local deadline has passed, no further message is handled, and every write
 * is conditional on the lease id. Each handler call is bounded by the subscription's handlerTimeout
 * (a failed attempt) and by the worker's drain timeout.
 */
export async function processCheckpoint(
  deps: ProcessDeps,
  claim: ClaimedCheckpoint & { messages?: RecordedMessage[] },
): Promise<ProcessResult> {
  const { pool, ctx, sub } = deps;
  const lease = new HeldLease(pool, ctx, claim, deps.leaseMs);
  try {
    let read = claim.messages;
    if (!read) {
      const batch = await readClaimedBatch(
        pool,
        deps.readPool,
        ctx,
        claim,
        sub.batchSize,
        deps.onReplicaError,
      );
      deps.onBatchRead?.(batch.from);
      read = batch.messages;
    }
    if (read.length === 0) {
      // The messages the checkpoint points at are gone (retention, manual delete): nothing to handle.
      const ours = await completeDirect(deps, claim, claim.streamVersion);
      return {
        handled: 0,
        position: ours ? claim.streamVersion : claim.streamPosition,
        status: ours ? 'done' : 'lease-lost',
        attempt: claim.attempts + 1,
      };
    }
    const items = prepare(deps, read);
    // The handler's signal follows the worker's and the lease's. Plain listeners, not
    // AbortSignal.any: that costs about 0.1 ms a claim on Node 20 and keeps every claim's signal
    // registered on the worker's long-lived one.
    const attempt = new AbortController();
    const follow = (source: AbortSignal) => () => attempt.abort(source.reason);
    const onDrain = follow(deps.signal);
    if (deps.signal.aborted) onDrain();
    else deps.signal.addEventListener('abort', onDrain, { once: true });
    lease.signal.addEventListener('abort', follow(lease.signal), { once: true });
    try {
      const holding = { lease, attempt, signal: attempt.signal };
      return sub.transactional
        ? await runTransactional(deps, claim, items, holding)
        : await runDirect(deps, claim, items, holding);
    } finally {
      deps.signal.removeEventListener('abort', onDrain);
    }
  } finally {
    lease.stop();
  }
}

interface Holding {
  lease: HeldLease;
  /**
   * The handler's signal's controller: aborted when the worker drains, the lease is lost, or a
   * handler call is abandoned (timeout, drain timeout).
   */
  attempt: AbortController;
  signal: AbortSignal;
}

function handlerContext(
  deps: ProcessDeps,
  store: MessageStore,
  signal: AbortSignal,
  client: pg.PoolClient | undefined,
  attempt: number,
): WorkerHandlerContext {
  return { store, signal, client, group: deps.sub.group, subscription: deps.sub.name, attempt };
}

/**
 * Call the subscription's handler over the claimed items, in stream order: the batch handler once
 * with the deliverable messages, or the handler message by message until the claim is aborted or
 * its lease expired. Returns how far it got; a throw is returned as `failure` (what was handled
 * before it counts), and `abandoned` when a call was given up on while still running.
 */
async function callHandlers(
  deps: ProcessDeps,
  items: Prepared[],
  holding: Holding,
  on: {
    store: MessageStore;
    client: pg.PoolClient | undefined;
    attemptFor: (m: RecordedMessage) => number;
  },
  from: number,
): Promise<{ position: number; handled: number; failure: Error | undefined; abandoned: boolean }> {
  const { sub } = deps;
  const { lease, signal } = holding;
  const bound = (call: () => unknown) =>
    boundHandlerCall(call, {
      subscription: sub.name,
      timeoutMs: sub.handlerTimeoutMs,
      attempt: holding.attempt,
      force: deps.force,
    });
  let position = from;
  let handled = 0;
  try {
    if (sub.batchHandler) {
      if (signal.aborted || lease.expired())
        return { position, handled, failure: undefined, abandoned: false };
      const batch = items.filter((i) => i.deliver).map((i) => deliverable(deps, i.message));
      if (batch.length > 0) {
        const context = handlerContext(
          deps,
          on.store.causedBy(batch[0]!),
          signal,
          on.client,
          on.attemptFor(items[0]!.message),
        );
        await bound(() => sub.batchHandler!(batch as never, context));
      }
      position = items[items.length - 1]!.message.streamPosition;
      handled = items.length;
    } else {
      for (const { message, deliver } of items) {
        // The clock, not a timer: a handler that blocked the event loop past the deadline must not
        // be followed by another message while a new holder may already run this stream.
        if (signal.aborted || lease.expired()) break;
        if (deliver) {
          const m = deliverable(deps, message);
          const context = handlerContext(
            deps,
            on.store.causedBy(m),
            signal,
            on.client,
            on.attemptFor(message),
          );
          await bound(() => sub.handler!(m as never, context));
        }
        position = message.streamPosition;
        handled++;
      }
    }
    return { position, handled, failure: undefined, abandoned: false };
  } catch (err) {
    return { position, handled, failure: toError(err), abandoned: isAbandoned(err) };
  }
}

/** What a failed attempt writes: retry with backoff, or failed once the retries are spent. */
async function recordFailure(
  deps: ProcessDeps,
  claim: ClaimedCheckpoint,
  run: { position: number; handled: number; failure: Error; abandoned: boolean },
  attempts: number,
): Promise<ProcessResult> {
  const { sub } = deps;
  const failed = retriesExhausted(attempts, sub.maxRetries);
  const ours = await failCheckpoint(deps.pool, deps.ctx, claim, {
    position: run.position,
    status: failed ? 'failed' : 'retry',
    attempts,
    error: describeError(run.failure, attempts),
    delayMs: failed ? 0 : retryDelayMs(attempts, sub.backoff),
  });
  return {
    handled: run.handled,
    position: run.position,
    error: run.failure,
    status: ours ? (failed ? 'failed' : 'retry') : 'lease-lost',
    attempt: attempts,
    ...(run.abandoned ? { abandoned: true } : {}),
  };
}

/**
 * A failure that counts as a failed attempt: a handler error or a timeout. A handler that gave up
 * because the worker is draining or the lease is gone (or was left behind at the drain timeout) is
 * not one.
 */
const countsAsFailure = (deps: ProcessDeps, holding: Holding, failure: Error | undefined): failure is Error =>
  failure !== undefined &&
  !(failure instanceof HandlerAbandonedError) &&
  (failure instanceof HandlerTimeoutError || !(deps.signal.aborted || holding.lease.signal.aborted));

async function runDirect(
  deps: ProcessDeps,
  claim: ClaimedCheckpoint,
  items: Prepared[],
  holding: Holding,
): Promise<ProcessResult> {
  const attemptFor = (m: RecordedMessage) =>
    m.streamPosition === claim.streamPosition + 1 ? claim.attempts + 1 : 1;
  const run = await callHandlers(
    deps,
    items,
    holding,
    { store: deps.store, client: undefined, attemptFor },
    claim.streamPosition,
  );
  const { position, handled, failure } = run;
  holding.lease.stop();
  // Taken over: another consumer holds the stream, and any write would match nothing.
  if (holding.lease.taken) return { handled, position, status: 'lease-lost', attempt: claim.attempts + 1 };
  if (countsAsFailure(deps, holding, failure)) {
    const attempts = position > claim.streamPosition ? 1 : claim.attempts + 1;
    return recordFailure(deps, claim, { ...run, failure }, attempts);
  }
  // Past the deadline the write still lands if nobody took the stream meanwhile (it is conditional).
  const ours = await completeDirect(deps, claim, position);
  const drained = failure !== undefined || position < items[items.length - 1]!.message.streamPosition;
  return {
    handled,
    position,
    status: !ours ? 'lease-lost' : drained ? 'drained' : 'done',
    attempt: claim.attempts + 1,
    ...(run.abandoned ? { abandoned: true } : {}),
  };
}

/**
 * Every statement and every idle moment of a handler's transaction ends on the server too, even if
 * this process cannot act (its event loop blocked): a transaction holding a transaction id stalls
 * every gap-safe reader of the cluster. A little over the handler timeout, so that the timeout
 * below, which terminates the session at once, is what normally fires.
 */
const beginBounded = (timeoutMs: number) => {
  const ms = Math.min(2_147_483_647, timeoutMs + 1000);
  return `BEGIN; SET LOCAL statement_timeout = ${ms}; SET LOCAL idle_in_transaction_session_timeout = ${ms}; SELECT pg_backend_pid() AS pid`;
};

const terminateSql = 'SELECT pg_terminate_backend($1)';

async function runTransactional(
  deps: ProcessDeps,
  claim: ClaimedCheckpoint,
  items: Prepared[],
  holding: Holding,
): Promise<ProcessResult> {
  const { pool, ctx } = deps;
  const client = await connectGuarded(pool);
  let broken: Error | undefined;
  const attempt = claim.attempts + 1;
  let run: Awaited<ReturnType<typeof callHandlers>>;
  try {
    const begun = (await client.query(
      beginBounded(deps.sub.handlerTimeoutMs),
    )) as unknown as pg.QueryResult[];
    const pid = begun[begun.length - 1]?.rows[0]?.pid as number;
    run = await callHandlers(
      deps,
      items,
      holding,
      { store: deps.store.withTransaction(client), client, attemptFor: () => attempt },
      claim.streamPosition,
    );
    const { position, handled, failure } = run;
    if (run.abandoned) {
      // The handler still runs on this client, perhaps in a query: ROLLBACK would queue behind it.
      // End its session from outside, so nothing it does later can commit.
      broken = failure;
      await pool.query(terminateSql, [pid]);
    } else if (!failure && !holding.lease.taken && position > claim.streamPosition) {
      // The checkpoint advances in the handler's transaction, conditional on the lease (and its row
      // lock keeps a claimer out until COMMIT): if the lease was taken over, nothing the handler
      // wrote is kept, so each message counts exactly once.
      holding.lease.stop();
      try {
        if (await completeCheckpoint(client, ctx, claim, position)) {
          await client.query('COMMIT');
          deps.store.notify();
          const drained = position < items[items.length - 1]!.message.streamPosition;
          return { handled, position, status: drained ? 'drained' : 'done', attempt };
        }
        await client.query('ROLLBACK');
        return { handled: 0, position: claim.streamPosition, status: 'lease-lost', attempt };
      } catch (err) {
        // The transaction could not end: the server ended the session (its idle or statement timeout
        // while this process was blocked) or the connection dropped. A failed attempt; had COMMIT
        // landed after all, the lease is gone and the failure recorded below matches nothing.
        broken = toError(err);
        run = { ...run, handled: 0, failure: broken };
      }
    } else {
      // A session the server already ended (idle_in_transaction_session_timeout while the loop was
      // blocked) has nothing left to roll back: the failure is still recorded below.
      await client.query('ROLLBACK').catch((err) => {
        broken = toError(err);
      });
    }
  } catch (err) {
    broken = toError(err);
    throw err;
  } finally {
    client.release(broken);
  }
  holding.lease.stop();
  if (holding.lease.taken)
    return { handled: 0, position: claim.streamPosition, status: 'lease-lost', attempt };
  if (countsAsFailure(deps, holding, run.failure)) {
    // The whole batch rolled back: the next attempt starts again after stream_position.
    return recordFailure(
      deps,
      claim,
      { position: claim.streamPosition, handled: 0, failure: run.failure, abandoned: run.abandoned },
      attempt,
    );
  }
  const ours = await completeCheckpoint(pool, ctx, claim, claim.streamPosition);
  return {
    handled: 0,
    position: claim.streamPosition,
    status: ours ? 'drained' : 'lease-lost',
    attempt,
    ...(run.abandoned ? { abandoned: true } : {}),
  };
}
