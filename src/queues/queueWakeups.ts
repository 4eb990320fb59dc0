import type pg from 'pg';
import { NO_FLUSH } from '../db/planSettings.js';
import { type SqlContext, statement } from '../db/queryable.js';
import { type CarriedWakeup, channelFor } from '../store/notifications.js';
import { transactionStatuses } from './queueJobsSql.js';

/** The payload on the schema's channel that says jobs were enqueued to `queue`. */
export const queuePayload = (queue: string): string => `queue:${queue}`;

/** The queue a payload names, or undefined when it is not a queue wake-up. */
export function queueOfPayload(payload: string): string | undefined {
  return payload.startsWith('queue:') ? payload.slice(6) : undefined;
}

/** One NOTIFY per queue, committed without waiting for a WAL flush (the jobs are durable already). */
const NOTIFY_QUEUES_SQL = `SELECT ${NO_FLUSH}, pg_notify($1, 'queue:' || q)
  FROM unnest($2::text[]) AS q`;

/** Longest wait between two looks at the transactions enqueued in that have not ended yet. */
const WATCH_MAX_MS = 250;
/** A transaction watched longer than this is dropped: the workers' polling finds its jobs. */
const WATCH_GIVE_UP_MS = 10 * 60_000;

/**
 * Wake-ups for enqueued jobs: a NOTIFY per queue after commit (never inside the writing
 * transaction, where it would serialise every notifying commit of the cluster). Jobs enqueued on
 * the pool are announced by the insert's own round trip (enqueues that arrive together share one
 * insert, so one NOTIFY); jobs enqueued in a caller's transaction, once that transaction is seen
 * committed (pg_xact_status, looked at a few milliseconds apart and then less often), and never
 * when it rolled back. There is no time window: a job committed just after a NOTIFY would wait for
 * the next one (at 1,000 jobs/s a 3 ms window put the median wake-up at 1.7 ms, against 0.3 ms
 * without). What bounds the NOTIFYs is that at most one is sent on its own at a time (the rest
 * queue behind it, coalesced) and that carried ones ride on inserts, which group commit already
 * batches. Wake-ups only cut waits short: workers poll anyway.
 */
export class QueueNotifier {
  readonly #pool: pg.Pool;
  readonly #channel: string;
  readonly #ctx: SqlContext;
  readonly #pending = new Set<string>();
  #inFlight = false;
  /** Transaction id -> queues it enqueued to, and when it was first seen. */
  readonly #watched = new Map<string, { queues: Set<string>; since: number }>();
  #watchTimer: NodeJS.Timeout | undefined;
  #watchDelay = 1;
  #watching = false;

  constructor(pool: pg.Pool, ctx: SqlContext) {
    this.#pool = pool;
    this.#channel = channelFor(ctx.schema);
    this.#ctx = ctx;
  }

  /** The NOTIFY of `queues`, one payload each. */
  #statement(queues: string[]): pg.QueryConfig {
    return statement(this.#ctx, 'notify_queues', NOTIFY_QUEUES_SQL, [this.#channel, queues]);
  }

  /** Jobs were committed to `queue`: a NOTIFY follows (after the one in flight). Never throws. */
  notify(queue: string): void {
    this.#pending.add(queue);
    this.#schedule();
  }

  /**
   * The wake-up for jobs about to be committed to `queue` on the pool, for the insert's own round
   * trip to carry (WakeupCarrier): one NOTIFY for `queue` and every queue pending, unless one is
   * being sent on its own (the insert then announces itself after commit, queued behind it).
   */
  carrying(queue: string): CarriedWakeup {
    return {
      claim: () => {
        if (this.#inFlight) return undefined;
        const queues = [...new Set([queue, ...this.#pending])];
        this.#pending.clear();
        return this.#statement(queues);
      },
      owe: () => this.notify(queue),
    };
  }

  /** Jobs were enqueued to `queue` in transaction `xid`: announce them once it commits. */
  afterCommit(xid: string, queue: string): void {
    let w = this.#watched.get(xid);
    if (!w) {
      w = { queues: new Set(), since: Date.now() };
      this.#watched.set(xid, w);
    }
    w.queues.add(queue);
    this.#watchDelay = 1;
    if (!this.#watching && this.#watchTimer === undefined) this.#armWatch();
  }

  #armWatch(): void {
    this.#watchTimer = setTimeout(() => {
      this.#watchTimer = undefined;
      void this.#look();
    }, this.#watchDelay);
    this.#watchTimer.unref();
  }

  async #look(): Promise<void> {
    this.#watching = true;
    try {
      const statuses = await transactionStatuses(this.#pool, [...this.#watched.keys()]).catch(
        () => new Map<string, string | null>(),
      );
      const now = Date.now();
      for (const [xid, w] of this.#watched) {
        const status = statuses.get(xid);
        if (status === 'committed') for (const q of w.queues) this.notify(q);
        if (status === 'committed' || status === 'aborted' || now - w.since > WATCH_GIVE_UP_MS)
          this.#watched.delete(xid);
      }
    } finally {
      this.#watching = false;
      if (this.#watched.size > 0) {
        this.#watchDelay = Math.min(WATCH_MAX_MS, this.#watchDelay * 2);
        this.#armWatch();
      }
    }
  }

  #schedule(): void {
    if (this.#inFlight || this.#pending.size === 0) return;
    void this.#send();
  }

  async #send(): Promise<void> {
    this.#inFlight = true;
    const queues = [...this.#pending];
    this.#pending.clear();
    try {
      await this.#pool.query(this.#statement(queues)).catch(() => undefined);
    } finally {
      this.#inFlight = false;
      this.#schedule();
    }
  }

  /** Wait for the NOTIFY in flight and send what is pending (tests, shutdown). */
  async flush(): Promise<void> {
    while (this.#inFlight) await new Promise((r) => setTimeout(r, 1));
    if (this.#pending.size > 0) await this.#send();
  }
}

const notifiers = new WeakMap<pg.Pool, Map<string, QueueNotifier>>();

/** The one queue notifier of a pool and schema. */
export function queueNotifierFor(pool: pg.Pool, ctx: SqlContext): QueueNotifier {
  let bySchema = notifiers.get(pool);
  if (!bySchema) {
    bySchema = new Map();
    notifiers.set(pool, bySchema);
  }
  let n = bySchema.get(ctx.schema);
  if (!n) {
    n = new QueueNotifier(pool, ctx);
    bySchema.set(ctx.schema, n);
  }
  return n;
}
