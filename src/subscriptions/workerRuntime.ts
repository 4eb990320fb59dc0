import { randomBytes, randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type pg from 'pg';
import type { ResolvedConfig, ResolvedGroup, ResolvedSubscription } from '../config/types.js';
import { assertSafeSchemaName, escapeIdentifier } from '../db/identifier.js';
import type { SqlContext } from '../db/queryable.js';
import { assertListenUrlReachesPool, assertReplicaOf } from '../db/serverIdentity.js';
import { SqlState, sqlStateOf } from '../db/sqlstate.js';
import { ConfigError, InvalidInputError, NotFoundError, NotMigratedError, toError } from '../errors.js';
import { createMessageStore, type MessageStore } from '../store/messageStore.js';
import { channelFor } from '../store/notifications.js';
import { assertTransactionIdsBehindCounter } from '../store/transactionIdCounter.js';
import { instrumentSubscription } from '../telemetry/instrumentSubscription.js';
import { ClaimBatcher, CompleteBatcher } from './batchedClaims.js';
import { HandlerTimeoutError } from './boundHandlerCall.js';
import {
  type Claim,
  type ClaimArgs,
  type ClaimedCheckpoint,
  releaseLease,
  releaseWorkerLeases,
} from './claimCheckpoint.js';
import { ClaimHandoff } from './claimHandoff.js';
import { heldBack, readerRound } from './globalReader.js';
import { connectGuarded, guardPool } from './guardPool.js';
import { CoalescedNotify, checkpointsPayload, listenForWakeups } from './listenForWakeups.js';
import { type ProcessDeps, type ProcessResult, processCheckpoint } from './processCheckpoint.js';
import { registerSubscriptions, registrationNotices, unregisterRunner } from './registerSubscriptions.js';
import { fingerprintOf } from './subscriptionDefinition.js';
import { AdaptiveInterval, sleep, Wakeup } from './wakeup.js';
import { heartbeat, removeWorker } from './workersTable.js';

/** How long stop() waits after the drain timeout for the last writes and lease releases. */
const STOP_GRACE_MS = 1000;
/** How long a claim the reader handed over may wait for a consumer before it goes back. */
const HANDED_CLAIM_STALE_MS = 250;

/** A background loop run alongside the worker (scheduled messages, ...); stop when `signal` aborts. */
export type WorkerService = (signal: AbortSignal) => Promise<void>;

export interface WorkerOptions {
  /** Your pool; it stays open when the worker stops. */
  pool: pg.Pool;
  /**
   * A pool on a streaming replica of the same database (yours; it stays open). Checkpoints more
   * than a batch behind (catch-up) read their messages there; the reader, claims, checkpoints and
   * live batches stay on `pool`. A batch the replica has not replayed yet, or cannot serve, is read
   * from the primary: a lagging replica never makes a handler miss a message.
   */
  readPool?: pg.Pool;
  /** Resolved config (loadConfig or resolveConfig): its subscription groups and message types. */
  config: ResolvedConfig;
  /** The group to run. */
  group: string;
  /** Default: config.database.schema. */
  schema?: string;
  /** Checkpoint consumers in this process. Default: the group's concurrency (4). */
  concurrency?: number;
  /** Unique id of this worker (written to `workers` and to leases). Default: host-pid-random. */
  workerId?: string;
  /**
   * How long a claim holds a checkpoint without renewal; renewed every third of it. A holder that
   * could not renew in time (its event loop blocked, the database away) stops before its next
   * message. Default 30 s.
   */
  leaseMs?: number;
  /**
   * stop() lets in-flight handlers finish for this long; handlers still running then are abandoned
   * (their leases released, transactional ones' transactions ended) and stop() resolves at most a
   * second later, whatever the handlers or the database do. Default 30 s.
   */
  drainTimeoutMs?: number;
  /** Longest idle poll (the backstop when no notification arrives). Default 1000 ms. */
  maxPollMs?: number;
  /** Log messages the global reader takes per round. Default 1000. */
  readerBatchSize?: number;
  /** How often the workers row is refreshed. Default 5000 ms. */
  heartbeatMs?: number;
  /** Background loops started with the worker and awaited when it stops. */
  services?: WorkerService[];
  /** Called after each claim with what was done (for progress, metrics, benchmarks). */
  onProcessed?: (event: ProcessedEvent) => void;
  /** Errors the worker survives (database away, a service that threw); the library never prints. */
  onError?: (error: Error, where: string) => void;
  /**
   * Conditions worth an operator's attention that are not errors: a transaction open for more than
   * 30 s while messages wait behind it (gap-safe reads cannot pass it). At most every 30 s.
   */
  onWarning?: (message: string) => void;
}

export interface ProcessedEvent {
  group: string;
  subscription: string;
  stream: string;
  /** Messages handled (or skipped) in this claim. */
  handled: number;
  /** The checkpoint's position after the claim. */
  position: number;
  status: ProcessResult['status'];
  attempt: number;
  error?: Error;
}

export interface WorkerStats {
  /** Messages handled (or skipped as unmapped) and recorded. */
  processed: number;
  claims: number;
  /** Claims that ended with a handler error (retry or failed). */
  failures: number;
  readerRounds: number;
  /** Checkpoints created or raised by this process's global reader. */
  dispatched: number;
  /** Claims the reader made for this process's idle consumers in the round that dispatched. */
  handedOver: number;
  /**
   * Of those, claims no consumer took within a moment (every consumer had become busy): handed back
   * at once, for an idle consumer here or in another process to claim.
   */
  handedBack: number;
  /** Handler calls that outlived their subscription's handlerTimeout (counted in failures too). */
  timeouts: number;
  /** Handler calls left running at the drain timeout. */
  abandoned: number;
  /** Catch-up batches read from the replica (`readPool`). */
  replicaBatches: number;
  /** Catch-up batches the primary served because the replica lagged behind them or failed. */
  replicaMisses: number;
}

export interface Worker {
  readonly id: string;
  readonly group: string;
  /** The pool it runs on (yours; it stays open when the worker stops). */
  readonly pool: pg.Pool;
  /** The schema it runs in. */
  readonly schema: string;
  /** Register the group's subscriptions and start reading and consuming. Resolves once running. */
  start(): Promise<void>;
  /**
   * Drain: stop claiming, let in-flight handlers finish (handlers see ctx.signal aborted), release
   * leases, stop services. Idempotent; resolves when everything stopped, and at the latest about a
   * second after the drain timeout (handlers still running then are abandoned).
   */
  stop(): Promise<void>;
  stats(): WorkerStats;
}

/** Look up a group, failing with the list of groups the config has. */
export function findGroup(config: ResolvedConfig, name: string): ResolvedGroup {
  const group = config.groups.get(name);
  if (group) return group;
  const known = [...config.groups.keys()];
  throw new NotFoundError(
    `Unknown group "${name}"${config.path ? ` in ${config.path}` : ''}. ${
      known.length > 0 ? `Groups in the config: ${known.join(', ')}.` : 'The config has no groups.'
    }`,
    'Pass one of the groups declared under groups in the config: es worker --group NAME.',
  );
}

export function defaultWorkerId(): string {
  return `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
}

/** A worker running one subscription group in this process. */
export function createWorker(opts: WorkerOptions): Worker {
  const group = findGroup(opts.config, opts.group);
  const schema = assertSafeSchemaName(opts.schema ?? opts.config.database.schema);
  const ctx: SqlContext = {
    schema,
    s: escapeIdentifier(schema),
    prepared: opts.config.database.preparedStatements,
  };
  const concurrency = opts.concurrency ?? group.concurrency;
  if (!Number.isInteger(concurrency) || concurrency < 1)
    throw new InvalidInputError(`Invalid concurrency ${concurrency}: use an integer >= 1.`);
  const id = opts.workerId ?? defaultWorkerId();
  const leaseMs = opts.leaseMs ?? 30_000;
  const maxPollMs = opts.maxPollMs ?? 1000;
  const readerBatchSize = opts.readerBatchSize ?? 1000;
  const heartbeatMs = opts.heartbeatMs ?? 5000;
  const drainTimeoutMs = opts.drainTimeoutMs ?? 30_000;
  const pool = opts.pool;
  guardPool(pool);
  if (opts.readPool) guardPool(opts.readPool);
  const subs = [...group.subscriptions.values()];
  const subNames = subs.map((s) => s.name);
  const batchSizes = subs.map((s) => s.batchSize);
  const fingerprints = subs.map(fingerprintOf);
  const store: MessageStore = createMessageStore({
    pool,
    schema,
    messages: opts.config.messages,
    preparedStatements: ctx.prepared,
  });
  const controller = new AbortController();
  const signal = controller.signal;
  // Aborted at the drain timeout: in-flight handlers are abandoned.
  const force = new AbortController();
  const readerWake = new Wakeup();
  // Consumers wait here: woken to claim, or handed a claim the reader made for them. A claim handed
  // over when every consumer had turned busy goes back after a moment: its stream must not wait
  // for a consumer busy with a slow handler while another consumer or process is free.
  const consumerWake = new ClaimHandoff(Math.min(HANDED_CLAIM_STALE_MS, leaseMs / 4), (stale) => {
    stats.handedBack += stale.length;
    for (const c of stale)
      releaseLease(pool, ctx, { group: group.name, workerId: id, leaseId: c.leaseId }).then(
        () => {
          consumerWake.wake();
          dispatchNotify.send();
        },
        (err) => {
          // A consumer hands it back once the database answers.
          unreleased.add(c.leaseId);
          onError(err, 'consumer');
        },
      );
  });
  const dispatchNotify = new CoalescedNotify(pool, channelFor(schema), checkpointsPayload(group.name));
  // The consumers' claims and completions, shared: several in one statement when they come together.
  const claimArgs: ClaimArgs = {
    group: group.name,
    subscriptions: subNames,
    batchSizes,
    fingerprints,
    workerId: id,
    leaseMs,
    catchUpOnReplica: opts.readPool !== undefined,
  };
  const claims = new ClaimBatcher(pool, ctx, claimArgs, concurrency);
  // Leases this process may hold without a holder working under them: a claim whose reply was lost
  // (it may have committed), a reader round that claimed and failed, or a claim whose last write
  // failed. Handed back by the next consumer that reaches the database, rather than leaving their
  // streams idle until the lease expires.
  const unreleased = new Set<string>();
  const completions = new CompleteBatcher(pool, ctx, group.name, concurrency, claimArgs);
  const stats: WorkerStats = {
    processed: 0,
    claims: 0,
    failures: 0,
    readerRounds: 0,
    dispatched: 0,
    handedOver: 0,
    handedBack: 0,
    timeouts: 0,
    abandoned: 0,
    replicaBatches: 0,
    replicaMisses: 0,
  };
  const onError = (err: unknown, where: string) => {
    if (!signal.aborted || where !== 'consumer') opts.onError?.(toError(err), where);
  };
  // Catch-up reads on the replica, for every claim (built once, not per claim).
  const replicaDeps: Pick<ProcessDeps, 'readPool' | 'onBatchRead' | 'onReplicaError'> = opts.readPool
    ? {
        readPool: opts.readPool,
        onBatchRead: (from) => {
          if (from === 'replica') stats.replicaBatches++;
          else stats.replicaMisses++;
        },
        onReplicaError: (err) => onError(err, 'replica'),
      }
    : {};
  // The replica serves catch-up only once it is known to be a standby of the primary (checked at
  // start, where a mismatch fails start(), and again at every heartbeat: a promotion turns it off).
  let replicaVerified = false;
  let replicaRefusal: string | undefined;
  async function verifyReplica(atStart: boolean): Promise<void> {
    if (!opts.readPool) return;
    try {
      await assertReplicaOf(pool, opts.readPool);
      replicaVerified = true;
      replicaRefusal = undefined;
    } catch (err) {
      if (!(err instanceof ConfigError)) return onError(err, 'replica');
      replicaVerified = false;
      if (atStart) throw err;
      if (replicaRefusal !== err.message) onError(err, 'replica');
      replicaRefusal = err.message;
    }
  }
  const loops: Promise<void>[] = [];
  let started: Promise<void> | undefined;
  let stopped: Promise<void> | undefined;

  let lastHeldBackCheck = Date.now();
  async function readerLoop(): Promise<void> {
    const interval = new AdaptiveInterval(20, maxPollMs);
    // While committed messages wait behind a running transaction: its end notifies nobody.
    const heldInterval = new AdaptiveInterval(20, Math.min(1000, maxPollMs));
    let errorDelay = 100;
    while (!signal.aborted) {
      try {
        const client = await connectGuarded(pool);
        let round: Awaited<ReturnType<typeof readerRound>>;
        // A claim for each consumer waiting now, made in the round that dispatches (if it does).
        const leaseIds = Array.from({ length: consumerWake.idle }, () => randomUUID());
        try {
          round = await readerRound(
            client,
            ctx,
            group,
            id,
            readerBatchSize,
            leaseIds.length > 0 ? { args: claimArgs, leaseIds } : undefined,
          );
        } catch (err) {
          // The round may have committed its claims: a consumer hands them back once it can.
          for (const lease of leaseIds) unreleased.add(lease);
          if (leaseIds.length > 0) consumerWake.wake();
          client.release(toError(err));
          throw err;
        }
        client.release();
        errorDelay = 100;
        stats.readerRounds++;
        const claimed = round.claims?.length ?? 0;
        if (claimed > 0) {
          stats.handedOver += claimed;
          consumerWake.offer(round.claims!);
        }
        if (round.dispatched > 0) {
          stats.dispatched += round.dispatched;
          // Work left for other consumers here and in other processes.
          if (round.dispatched > claimed) {
            consumerWake.wake();
            dispatchNotify.send();
          }
        }
        if (round.full) continue;
        if (round.read > 0) interval.busy();
        else if (opts.onWarning && Date.now() - lastHeldBackCheck > 30_000) {
          lastHeldBackCheck = Date.now();
          const held = await heldBack(pool, ctx).catch(() => undefined);
          if (held) opts.onWarning(held);
        }
        if (!round.held) heldInterval.busy();
        // Another process reads for the group: poll slowly, in case it dies. Never later than the
        // idle pace; sooner while messages are held back.
        const idle = interval.idle();
        const wait = round.locked ? maxPollMs : round.held ? Math.min(idle, heldInterval.idle()) : idle;
        await readerWake.wait(wait, signal);
      } catch (err) {
        onError(err, 'reader');
        await sleep(errorDelay, signal);
        errorDelay = Math.min(errorDelay * 2, 5000);
      }
    }
  }

  async function consumerLoop(): Promise<void> {
    const interval = new AdaptiveInterval(20, maxPollMs);
    let errorDelay = 100;
    // Handlers run in spans, record metrics and get ctx.schedule (see instrumentSubscription).
    const bySub = new Map<string, ResolvedSubscription>(subs.map((s) => [s.name, instrumentSubscription(s)]));
    // The claim this consumer asked for with its last completion (one round trip for both). One
    // still pending when the worker drains is handed back by stop(), after the batchers settle
    // (releaseWorkerLeases in drainAndClean).
    let pending: { leaseId: string; claimed: Promise<Claim | undefined> } | undefined;
    const complete = (claim: ClaimedCheckpoint, position: number): Promise<boolean> => {
      if (pending || signal.aborted) return completions.complete(claim, position);
      const leaseId = randomUUID();
      const { completed, claimed } = completions.completeAndClaim(claim, position, leaseId);
      // Awaited at the top of the loop; a rejection is handled there, not reported as unhandled.
      claimed.catch(() => undefined);
      pending = { leaseId, claimed };
      return completed;
    };
    while (!signal.aborted) {
      let leaseId: string | undefined;
      try {
        for (const lost of [...unreleased]) {
          await releaseLease(pool, ctx, { group: group.name, workerId: id, leaseId: lost });
          unreleased.delete(lost);
        }
        // The claim asked for with the last completion first (its lease is already running); then
        // one the reader made for this process (another idle consumer may take it meanwhile, and
        // one nobody takes goes back: see consumerWake); else a new one.
        let claim: Claim | undefined;
        // The last completion's claim found nothing: the database was just asked, and work that
        // comes later wakes this consumer (the reader here, or another process's notification).
        let askedJustNow = false;
        if (pending) {
          const asked = pending;
          pending = undefined;
          leaseId = asked.leaseId;
          claim = await asked.claimed;
          askedJustNow = claim === undefined;
          errorDelay = 100;
        }
        claim ??= consumerWake.take();
        if (!claim && !askedJustNow) {
          leaseId = randomUUID();
          claim = await claims.claim(leaseId);
          errorDelay = 100;
        }
        if (!claim) {
          leaseId = undefined;
          claim = await consumerWake.wait(interval.idle(), signal);
          if (!claim) continue;
        }
        // A claim handed over while the worker drains is processed as any claim is then: released.
        leaseId = claim.leaseId;
        interval.busy();
        stats.claims++;
        // More checkpoints may be waiting: let an idle sibling look.
        if (claim.moreMayWait) consumerWake.wake();
        const sub = bySub.get(claim.subscription)!;
        const result = await processCheckpoint(
          {
            pool,
            ctx,
            store,
            sub,
            messages: opts.config.messages,
            leaseMs,
            signal,
            force: force.signal,
            complete,
            ...(replicaVerified ? replicaDeps : {}),
          },
          claim,
        );
        leaseId = undefined;
        stats.processed += result.handled;
        if (result.error) stats.failures++;
        if (result.error instanceof HandlerTimeoutError) stats.timeouts++;
        else if (result.abandoned) stats.abandoned++;
        opts.onProcessed?.({
          group: group.name,
          subscription: claim.subscription,
          stream: claim.stream,
          handled: result.handled,
          position: result.position,
          status: result.status,
          attempt: result.attempt,
          ...(result.error ? { error: result.error } : {}),
        });
      } catch (err) {
        if (leaseId) unreleased.add(leaseId);
        onError(err, 'consumer');
        await sleep(errorDelay, signal);
        errorDelay = Math.min(errorDelay * 2, 5000);
      }
    }
  }

  async function heartbeatLoop(): Promise<void> {
    const record = { id, host: hostname(), pid: process.pid, group: group.name, concurrency };
    while (!signal.aborted) {
      await sleep(heartbeatMs, signal);
      if (signal.aborted) break;
      await heartbeat(pool, ctx, record).catch((err) => onError(err, 'heartbeat'));
      await register().catch((err) => onError(err, 'heartbeat'));
      await verifyReplica(false);
    }
  }

  async function runService(service: WorkerService): Promise<void> {
    try {
      await service(signal);
    } catch (err) {
      onError(err, 'service');
    }
  }

  // Re-registered at every heartbeat: keeps this process's definitions alive, takes a subscription
  // over once the definition in charge has no live process left, and says what changed (once).
  const told = new Map<string, string>();
  async function register(): Promise<void> {
    const r = await registerSubscriptions(pool, ctx, group, { workerId: id, aliveMs: 12 * heartbeatMs });
    for (const { subscription, text } of registrationNotices(group, r, told)) {
      opts.onWarning?.(text);
      told.set(subscription, text);
    }
  }

  async function doStart(): Promise<void> {
    try {
      // A restored database's ids ahead of the server's counter would leave every reader blind.
      await assertTransactionIdsBehindCounter(pool, ctx);
      await verifyReplica(true);
      // A listen URL elsewhere would lose every wake-up (an unreachable one: the listener retries).
      await assertListenUrlReachesPool(pool, (err) => onError(err, 'listener'));
      await register();
      await heartbeat(pool, ctx, { id, host: hostname(), pid: process.pid, group: group.name, concurrency });
    } catch (err) {
      const state = sqlStateOf(err);
      if (state === SqlState.undefinedTable || state === SqlState.invalidSchemaName)
        throw new NotMigratedError(schema);
      throw err;
    }
    loops.push(
      listenForWakeups(
        pool,
        schema,
        group.name,
        {
          onAppended: () => readerWake.wake(),
          onCheckpoints: () => consumerWake.wake(),
          onConnected: () => {
            readerWake.wake();
            consumerWake.wake();
          },
        },
        signal,
      ),
    );
    loops.push(readerLoop());
    for (let i = 0; i < concurrency; i++) loops.push(consumerLoop());
    loops.push(heartbeatLoop());
    for (const service of opts.services ?? []) loops.push(runService(service));
  }

  async function drainAndClean(): Promise<void> {
    await started?.catch(() => undefined);
    await Promise.all(loops);
    await claims.close();
    await completions.close();
    await dispatchNotify.flush();
    // Claims handed over and never taken go back with the rest: no hand-back timer outlives stop().
    consumerWake.clear();
    // Consumers released their own leases; this catches one whose last write failed.
    await releaseWorkerLeases(pool, ctx, id).catch((err) => opts.onError?.(toError(err), 'stop'));
    await removeWorker(pool, ctx, id).catch((err) => opts.onError?.(toError(err), 'stop'));
    await unregisterRunner(pool, ctx, id).catch((err) => opts.onError?.(toError(err), 'stop'));
    await store.close();
  }

  async function doStop(): Promise<void> {
    controller.abort();
    const forceTimer = setTimeout(() => force.abort(), drainTimeoutMs);
    // After the drain timeout the consumers write their last word (abandoned handlers release their
    // leases) within a grace; nothing, not even a database that stopped answering, holds stop() longer.
    // Leases not released by then expire on their own.
    let graceTimer: NodeJS.Timeout | undefined;
    const bounded = new Promise<void>((resolve) => {
      force.signal.addEventListener('abort', () => {
        graceTimer = setTimeout(resolve, STOP_GRACE_MS);
      });
    });
    const cleaned = drainAndClean().catch((err) => opts.onError?.(toError(err), 'stop'));
    await Promise.race([cleaned, bounded]);
    clearTimeout(forceTimer);
    clearTimeout(graceTimer);
  }

  return {
    id,
    group: group.name,
    pool,
    schema,
    start() {
      if (stopped) return Promise.reject(new InvalidInputError('This worker was stopped; create a new one.'));
      started ??= doStart();
      return started;
    },
    stop() {
      stopped ??= doStop();
      return stopped;
    },
    stats: () => ({ ...stats }),
  };
}
