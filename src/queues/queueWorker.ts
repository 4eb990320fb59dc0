import { randomUUID } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import type pg from 'pg';
import type { Job, JobContext, ResolvedConfig, ResolvedQueue } from '../config/types.js';
import { assertSafeSchemaName, escapeIdentifier } from '../db/identifier.js';
import type { SqlContext } from '../db/queryable.js';
import { assertListenUrlReachesPool } from '../db/serverIdentity.js';
import { SqlState, sqlStateOf } from '../db/sqlstate.js';
import { InvalidInputError, NotFoundError, NotMigratedError, toError } from '../errors.js';
import { createMessageStore, type MessageStore } from '../store/messageStore.js';
import {
  boundHandlerCall,
  HandlerAbandonedError,
  HandlerTimeoutError,
} from '../subscriptions/boundHandlerCall.js';
import { listenForWakeups } from '../subscriptions/listenForWakeups.js';
import { retryDelayMs } from '../subscriptions/retryPolicy.js';
import { AdaptiveInterval, sleep, Wakeup } from '../subscriptions/wakeup.js';
import { defaultWorkerId } from '../subscriptions/workerRuntime.js';
import { handlerEnqueue } from './enqueue.js';
import {
  addQueueStats,
  completeJobs,
  type DequeuedRow,
  dequeueJobsBeforeCommit,
  extendJobs,
  type FailOutcome,
  failJob,
  type JobError,
  nextVisibleInMs,
} from './queueJobsSql.js';
import { queueOfPayload } from './queueWakeups.js';
import { WorkerLiveness } from './workerLiveness.js';

export interface QueueWorkerOptions {
  /** Your pool; it stays open when the worker stops. */
  pool: pg.Pool;
  /** Resolved config: its `queues` and message types. */
  config: ResolvedConfig;
  /** The queues to serve (declared under `queues`). */
  queues: string[];
  /** Default: config.database.schema. */
  schema?: string;
  /**
   * Written to each delivery (`leased_by`) and to the worker's row in the `workers` table, whose
   * heartbeat tells the other workers it is alive. Default: host-pid-random. `es worker` gives its
   * subscription worker and its queue worker the same id (one row per process).
   */
  workerId?: string;
  /** The `workers` row's group (`es worker --group`); default '' (a worker of queues only). */
  group?: string;
  /** How often the worker's row is touched (and stale workers looked for). Default 5000 ms. */
  heartbeatMs?: number;
  /**
   * A worker whose heartbeat is older than this is taken for dead: any other queue worker makes its
   * deliveries visible again at once, rather than when their visibility expires. A worker that has
   * not managed to heartbeat for this long stops its own handlers (ctx.signal aborts): their jobs
   * may be someone else's by now. Default 30 000 ms (when es lag stops counting a worker as live).
   */
  staleWorkerMs?: number;
  /** Jobs at once per queue, overriding each queue's `concurrency`. */
  concurrency?: number;
  /** stop() lets handlers finish for this long, then abandons them (their jobs reappear). Default 30 s. */
  drainTimeoutMs?: number;
  /** Longest idle poll when no notification arrives. Default 1000 ms. */
  maxPollMs?: number;
  /** Called after each delivery with its outcome. */
  onProcessed?: (event: JobProcessedEvent) => void;
  /** Errors the worker survives (database away); the library never prints. */
  onError?: (error: Error, where: string) => void;
}

/** What became of one delivery. */
export interface JobProcessedEvent {
  queue: string;
  id: string;
  type: string;
  deliveries: number;
  /**
   * completed: acked; retry: failed, visible again after backoff; dead: moved to the dead letters;
   * lost: its visibility expired and another worker took it, or the delivery's own commit failed
   * (a lost connection: the handler had started, see dequeueJobsBeforeCommit), so this delivery's ack
   * or nack did not count.
   */
  outcome: 'completed' | FailOutcome;
  error?: Error;
}

export interface QueueWorkerStats {
  completed: number;
  failed: number;
  dead: number;
  /** Acks or nacks refused because the visibility had been taken over. */
  lost: number;
  /** Handlers left running at the drain timeout. */
  abandoned: number;
  /** Deliveries that outlived the queue's handlerTimeout (counted in failed too). */
  timeouts: number;
  /** Deliveries of dead workers (stale heartbeat) this worker made visible again. */
  released: number;
}

export interface QueueWorker {
  readonly id: string;
  readonly queues: string[];
  /** Start serving the queues. Resolves once running. */
  start(): Promise<void>;
  /** Drain: stop taking jobs, let handlers finish (up to the drain timeout). Idempotent. */
  stop(): Promise<void>;
  stats(): QueueWorkerStats;
}

/** Look up a queue, failing with the list of queues the config has. */
export function findQueue(config: ResolvedConfig, name: string): ResolvedQueue {
  const q = config.queues.get(name);
  if (q) return q;
  const known = [...config.queues.keys()];
  throw new NotFoundError(
    `Unknown queue "${name}"${config.path ? ` in ${config.path}` : ''}. ${
      known.length > 0 ? `Queues in the config: ${known.join(', ')}.` : 'The config has no queues.'
    }`,
    'Declare it under queues in the config: queues: { emails: { handler } }.',
  );
}

/**
 * An AbortController made when its signal is first asked for: most handlers never look at
 * ctx.signal, and a controller and its signal per job were about 6% of the worker's CPU on no-op
 * jobs (a CPU profile, bench/README session 14). One asked for after the abort comes aborted.
 */
class LazyAbort {
  #controller: AbortController | undefined;
  #reason: unknown;
  aborted = false;

  get signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.aborted) this.#controller.abort(this.#reason);
    }
    return this.#controller.signal;
  }

  abort(reason?: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.#reason = reason;
    this.#controller?.abort(reason);
  }
}

/** A held delivery: its token, and the abort for its handler. */
interface Held {
  token: string;
  abort: LazyAbort;
  /**
   * Local end of the visibility, on the monotonic clock (performance.now(): a wall clock set back
   * would keep a holder running past it): from before the dequeue or the last extension was sent.
   */
  deadline: number;
  /** The delivery's commit: the handler starts before it is confirmed, its ack or nack after. */
  committed: Promise<void>;
}

/** Raised into a handler's signal when its job's visibility was taken over. */
export class VisibilityLostError extends Error {
  constructor(id: string) {
    super(`Job ${id}: visibility lost (its timeout expired and another worker may have taken it)`);
    this.name = 'VisibilityLostError';
  }
}

const STATS_FLUSH_MS = 5000;

/**
 * A worker serving queues in this process: per queue, one loop takes visible jobs (up to its
 * concurrency), runs the handler on each, acks (batched) or nacks, and extends the visibility of the
 * jobs it holds every third of the timeout. Wake-ups: a NOTIFY on enqueue, a timer to the next job
 * to become visible (delayed jobs, retries), and polling as the backstop.
 */
export function createQueueWorker(opts: QueueWorkerOptions): QueueWorker {
  if (!Array.isArray(opts.queues) || opts.queues.length === 0)
    throw new InvalidInputError('createQueueWorker needs at least one queue.');
  const queues = opts.queues.map((q) => findQueue(opts.config, q));
  if (opts.concurrency !== undefined && (!Number.isInteger(opts.concurrency) || opts.concurrency < 1))
    throw new InvalidInputError(`Invalid concurrency ${opts.concurrency}: use an integer >= 1.`);
  const schema = assertSafeSchemaName(opts.schema ?? opts.config.database.schema);
  const ctx: SqlContext = {
    schema,
    s: escapeIdentifier(schema),
    prepared: opts.config.database.preparedStatements,
  };
  const pool = opts.pool;
  const id = opts.workerId ?? defaultWorkerId();
  const maxPollMs = opts.maxPollMs ?? 1000;
  const heartbeatMs = opts.heartbeatMs ?? 5000;
  const staleWorkerMs = opts.staleWorkerMs ?? 30_000;
  if (!Number.isFinite(heartbeatMs) || heartbeatMs < 10)
    throw new InvalidInputError(`Invalid heartbeatMs ${heartbeatMs}: use milliseconds >= 10.`);
  if (!(staleWorkerMs > heartbeatMs))
    throw new InvalidInputError(
      `staleWorkerMs (${staleWorkerMs}) must be longer than heartbeatMs (${heartbeatMs}): a live worker would look dead.`,
    );
  const drainTimeoutMs = opts.drainTimeoutMs ?? 30_000;
  const store: MessageStore = createMessageStore({
    pool,
    schema,
    messages: opts.config.messages,
    preparedStatements: ctx.prepared,
  });
  const controller = new AbortController();
  const signal = controller.signal;
  const stats: QueueWorkerStats = {
    completed: 0,
    failed: 0,
    dead: 0,
    lost: 0,
    abandoned: 0,
    timeouts: 0,
    released: 0,
  };
  const wakeups = new Map<string, Wakeup>(queues.map((q) => [q.name, new Wakeup()]));
  const runners: QueueRunner[] = [];
  const loops: Promise<void>[] = [];
  let started: Promise<void> | undefined;
  let stopped: Promise<void> | undefined;
  const onError = (err: unknown, where: string) => opts.onError?.(toError(err), where);

  class QueueRunner {
    readonly q: ResolvedQueue;
    readonly concurrency: number;
    readonly held = new Map<string, Held>();
    readonly running = new Set<Promise<void>>();
    readonly slotFree = new Wakeup();
    /** Handlers running now (a job being acked or nacked no longer takes a slot). */
    handlers = 0;
    readonly wake: Wakeup;
    /** Who enqueues from its handlers (handlerEnqueue). */
    readonly who: string;
    acks: { id: string; token: string; resolve: (ok: boolean) => void }[] = [];
    acking = false;
    completedSinceFlush = 0;
    failedSinceFlush = 0;

    constructor(q: ResolvedQueue) {
      this.q = q;
      this.concurrency = opts.concurrency ?? q.concurrency;
      this.wake = wakeups.get(q.name)!;
      this.who = `queue:${q.name}`;
    }

    async fetchLoop(): Promise<void> {
      const interval = new AdaptiveInterval(20, maxPollMs);
      let errorDelay = 100;
      while (!signal.aborted) {
        try {
          const free = this.concurrency - this.handlers;
          if (free <= 0) {
            await this.slotFree.wait(maxPollMs, signal);
            continue;
          }
          const limit = Math.min(free, this.q.batchSize);
          const token = randomUUID();
          const sentAt = performance.now();
          const { rows, committed } = await dequeueJobsBeforeCommit(pool, ctx, {
            queue: this.q.name,
            limit,
            visibilityMs: this.q.visibilityTimeoutMs,
            maxDeliveries: this.q.maxDeliveries,
            token,
            workerId: id,
          });
          errorDelay = 100;
          // The handlers start while the server commits the delivery (see dequeueJobsBeforeCommit).
          if (rows.length > 0) committed.catch((err) => onError(err, `queue ${this.q.name}`));
          for (const row of rows) this.start(row, token, sentAt + this.q.visibilityTimeoutMs, committed);
          if (rows.length === limit) {
            interval.busy();
            continue;
          }
          if (rows.length > 0) {
            // Drained for now: look again shortly, or at once on a NOTIFY.
            interval.busy();
            await this.wake.wait(interval.idle(), signal);
            continue;
          }
          // Sleep until a NOTIFY, the next job's visible time (a delayed job wakes on time), or the poll.
          const next = await nextVisibleInMs(pool, ctx, this.q.name);
          const idle = interval.idle();
          await this.wake.wait(next === undefined ? idle : Math.min(idle, Math.ceil(next) + 1), signal);
        } catch (err) {
          onError(err, `queue ${this.q.name}`);
          await sleep(errorDelay, signal);
          errorDelay = Math.min(errorDelay * 2, 5000);
        }
      }
    }

    start(row: DequeuedRow, token: string, deadline: number, committed: Promise<void>): void {
      const held: Held = { token, abort: new LazyAbort(), deadline, committed };
      // This delivery's entry only: the job may be delivered here again while this handler still runs.
      const release = () => {
        if (this.held.get(row.id) === held) this.held.delete(row.id);
      };
      // A delivery whose commit was not confirmed is given up (never extended again): others may
      // hold the job (see dequeueJobsBeforeCommit).
      committed.catch(() => {
        release();
        held.abort.abort(new VisibilityLostError(row.id));
      });
      this.held.set(row.id, held);
      this.handlers++;
      const run = this.run(row, held).finally(() => {
        this.running.delete(run);
        release();
      });
      this.running.add(run);
    }

    async run(row: DequeuedRow, held: Held): Promise<void> {
      if (row.previous >= this.q.maxDeliveries) {
        // Its last delivery expired without an ack: dead, without another delivery.
        this.handlerDone();
        if (await this.delivered(row, held)) await this.settle(row, held, 'dead', null);
        return;
      }
      const job: Job = {
        id: row.id,
        queue: this.q.name,
        type: row.type,
        data: row.data,
        metadata: row.metadata,
        key: row.key ?? undefined,
        deliveries: row.deliveries,
        enqueuedAt: row.created_at,
        errors: row.errors,
      };
      const cause = { id: row.id, metadata: row.metadata };
      const who = this.who;
      // Made when the handler first uses them (a no-op handler pays for none).
      let causedStore: MessageStore | undefined;
      let enqueue: JobContext['enqueue'] | undefined;
      const jobCtx: JobContext = {
        queue: this.q.name,
        get signal() {
          return held.abort.signal;
        },
        get store() {
          causedStore ??= store.causedBy(cause);
          return causedStore;
        },
        get enqueue() {
          enqueue ??= handlerEnqueue(store, cause, { who });
          return enqueue;
        },
      };
      let failure: Error | undefined;
      // Bounded by handlerTimeout (a failed delivery) and by a stop past the drain timeout (the call
      // is abandoned: its job reappears after the visibility); either aborts ctx.signal.
      try {
        await boundHandlerCall(() => this.q.handler(job, jobCtx), {
          subscription: this.q.name,
          owner: 'queue',
          timeoutMs: this.q.handlerTimeoutMs,
          attempt: held.abort,
          force: force.signal,
        });
      } catch (err) {
        failure = toError(err);
      } finally {
        this.handlerDone();
      }
      if (failure instanceof HandlerAbandonedError) {
        stats.abandoned++;
        return;
      }
      if (failure instanceof HandlerTimeoutError) stats.timeouts++;
      if (!(await this.delivered(row, held))) return;
      if (!failure) {
        const ok = await this.ack(row.id, held.token);
        if (ok) {
          stats.completed++;
          this.completedSinceFlush++;
        } else stats.lost++;
        this.processed(row, ok ? 'completed' : 'lost');
        return;
      }
      const dead = row.deliveries >= this.q.maxDeliveries;
      await this.settle(row, held, dead ? 'dead' : 'retry', failure);
    }

    /**
     * Wait for the delivery's commit before anything is said about the job; false (counted as
     * lost) when it could not be confirmed: no ack or nack of this delivery counts (see
     * dequeueJobsBeforeCommit for when the job comes back).
     */
    async delivered(row: DequeuedRow, held: Held): Promise<boolean> {
      try {
        await held.committed;
        return true;
      } catch (err) {
        stats.lost++;
        this.processed(row, 'lost', toError(err));
        return false;
      }
    }

    handlerDone(): void {
      this.handlers--;
      this.slotFree.wake();
    }

    async settle(row: DequeuedRow, held: Held, want: 'retry' | 'dead', failure: Error | null): Promise<void> {
      const error: JobError | null = failure
        ? {
            delivery: row.deliveries,
            at: new Date().toISOString(),
            name: failure.name || 'Error',
            message: failure.message,
            ...(failure.stack ? { stack: failure.stack } : {}),
            worker: id,
          }
        : null;
      let outcome: FailOutcome;
      for (let attempt = 0; ; attempt++) {
        try {
          outcome = await failJob(pool, ctx, {
            id: row.id,
            token: held.token,
            error,
            backoffMs: retryDelayMs(row.deliveries, this.q.backoff),
            dead: want === 'dead',
          });
          break;
        } catch (err) {
          // The job reappears after its visibility anyway; retry the nack while it would still count.
          onError(err, `queue ${this.q.name}`);
          if (signal.aborted || attempt >= 5) {
            outcome = 'lost';
            break;
          }
          await sleep(200 * 2 ** attempt, force.signal);
        }
      }
      if (outcome === 'lost') stats.lost++;
      else {
        stats.failed++;
        this.failedSinceFlush++;
        if (outcome === 'dead') stats.dead++;
      }
      this.processed(row, outcome, failure);
    }

    /** Tell onProcessed how this delivery of `row` ended. */
    processed(row: DequeuedRow, outcome: JobProcessedEvent['outcome'], error?: Error | null): void {
      opts.onProcessed?.({
        queue: this.q.name,
        id: row.id,
        type: row.type,
        deliveries: row.deliveries,
        outcome,
        ...(error ? { error } : {}),
      });
    }

    /** Acks of this queue's handlers that finish together go in one statement. */
    ack(jobId: string, token: string): Promise<boolean> {
      return new Promise((resolve) => {
        this.acks.push({ id: jobId, token, resolve });
        if (!this.acking) void this.flushAcks();
      });
    }

    async flushAcks(): Promise<void> {
      this.acking = true;
      try {
        while (this.acks.length > 0) {
          const batch = this.acks.splice(0);
          let done: Set<string> | undefined;
          for (let attempt = 0; done === undefined; attempt++) {
            try {
              done = await completeJobs(pool, ctx, batch);
            } catch (err) {
              onError(err, `queue ${this.q.name}`);
              // Not acked: the jobs reappear after their visibility (at least once).
              if (attempt >= 5) done = new Set();
              else await sleep(200 * 2 ** attempt, force.signal);
            }
          }
          for (const a of batch) a.resolve(done.has(a.id));
        }
      } finally {
        this.acking = false;
      }
    }

    /**
     * Extend the visibility of every job held, every third of the timeout; abort the handler of a job
     * taken over, and of one whose visibility ran out here without an extension (a blocked event
     * loop, the database away): another worker may hold it now.
     */
    async heartbeatLoop(): Promise<void> {
      const vis = this.q.visibilityTimeoutMs;
      const every = Math.max(30, Math.floor(vis / 3));
      let extending = false;
      while (!force.signal.aborted) {
        await sleep(every, force.signal);
        if (force.signal.aborted || (signal.aborted && this.running.size === 0)) break;
        const now = performance.now();
        this.abortLost(now);
        if (extending || this.held.size === 0) continue;
        extending = true;
        const jobs = [...this.held].map(([jid, h]) => ({ id: jid, token: h.token }));
        void extendJobs(pool, ctx, jobs, vis)
          .then((kept) => {
            for (const j of jobs) {
              const h = this.held.get(j.id);
              if (!h || h.token !== j.token) continue;
              if (kept.has(j.id)) h.deadline = now + vis;
              else h.abort.abort(new VisibilityLostError(j.id));
            }
          })
          .catch((err) => onError(err, `queue ${this.q.name} heartbeat`))
          .finally(() => {
            extending = false;
          });
      }
    }

    /**
     * Abort the handlers whose job may be someone else's by now: its visibility ran out here without
     * an extension, or this worker has not heartbeaten for staleWorkerMs (others release its jobs).
     */
    abortLost(now: number): void {
      const beatLost = liveness.lost(now);
      for (const [jid, h] of this.held)
        if ((h.deadline <= now || beatLost) && !h.abort.aborted) h.abort.abort(new VisibilityLostError(jid));
    }

    async statsLoop(): Promise<void> {
      while (!force.signal.aborted) {
        await sleep(STATS_FLUSH_MS, force.signal);
        await this.flushStats();
      }
    }

    async flushStats(): Promise<void> {
      const completed = this.completedSinceFlush;
      const failed = this.failedSinceFlush;
      if (completed === 0 && failed === 0) return;
      this.completedSinceFlush = 0;
      this.failedSinceFlush = 0;
      await addQueueStats(pool, ctx, this.q.name, completed, failed).catch((err) => {
        this.completedSinceFlush += completed;
        this.failedSinceFlush += failed;
        onError(err, `queue ${this.q.name} stats`);
      });
    }

    /** Wait for the handlers running now. */
    async drained(): Promise<void> {
      while (this.running.size > 0) await Promise.allSettled([...this.running]);
    }
  }

  const force = new AbortController();
  // One listener per job in flight (concurrency may be large).
  setMaxListeners(0, force.signal);

  const liveness = new WorkerLiveness({
    pool,
    ctx,
    id,
    group: opts.group ?? '',
    concurrency: queues.reduce((n, q) => n + (opts.concurrency ?? q.concurrency), 0),
    heartbeatMs,
    staleWorkerMs,
    onReleased: (released) => {
      for (const [queue, n] of released) {
        stats.released += n;
        wakeups.get(queue)?.wake();
      }
    },
    onError,
  });

  /** Checks the handlers' deadlines at the heartbeat's pace, never waiting on the database. */
  async function deadlineLoop(): Promise<void> {
    while (!force.signal.aborted) {
      await sleep(Math.min(heartbeatMs, 1000), force.signal);
      const now = performance.now();
      for (const r of runners) r.abortLost(now);
    }
  }

  async function doStart(): Promise<void> {
    try {
      await pool.query(`SELECT 1 FROM ${ctx.s}.queue_jobs LIMIT 0`);
      // A listen URL elsewhere would lose every wake-up (an unreachable one: the listener retries).
      await assertListenUrlReachesPool(pool, (err) => onError(err, 'listener'));
    } catch (err) {
      const state = sqlStateOf(err);
      if (state === SqlState.undefinedTable || state === SqlState.invalidSchemaName)
        throw new NotMigratedError(schema);
      throw err;
    }
    // Registered before the first delivery: from then on a stale heartbeat gives its jobs back.
    await liveness.beat();
    // Until the drain ends (not only until it starts): a draining worker's handlers still hold jobs.
    loops.push(liveness.run(force.signal), deadlineLoop());
    loops.push(
      listenForWakeups(
        pool,
        schema,
        '',
        {
          onAppended: () => undefined,
          onCheckpoints: () => undefined,
          onConnected: () => {
            for (const w of wakeups.values()) w.wake();
          },
          onOther: (payload) => {
            const q = queueOfPayload(payload);
            if (q !== undefined) wakeups.get(q)?.wake();
          },
        },
        signal,
      ),
    );
    for (const q of queues) {
      const r = new QueueRunner(q);
      runners.push(r);
      loops.push(r.fetchLoop(), r.heartbeatLoop(), r.statsLoop());
    }
  }

  async function doStop(): Promise<void> {
    controller.abort();
    await started?.catch(() => undefined);
    const forceTimer = setTimeout(() => force.abort(), drainTimeoutMs);
    try {
      await Promise.all(runners.map((r) => r.drained()));
    } finally {
      clearTimeout(forceTimer);
      force.abort();
    }
    await Promise.all(loops);
    await Promise.all(runners.map((r) => r.flushStats()));
    // A clean stop: nothing is held any more (abandoned jobs reappear after their visibility).
    if (started) await liveness.remove();
    await store.close();
  }

  return {
    id,
    queues: queues.map((q) => q.name),
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
