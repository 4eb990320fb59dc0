import type pg from 'pg';
import {
  type PipelinedField,
  type PipelinedStatement,
  pipelinedPartial,
  rowObjects,
  runFirstValue,
  runPipelined,
  runPipelinedWithFields,
} from '../db/pipeline.js';
import { NO_FLUSH } from '../db/planSettings.js';
import {
  type Queryable,
  type SqlContext,
  schemaTag,
  statement,
  transactionStatements,
  withClient,
} from '../db/queryable.js';
import { isConnectionError } from '../db/sqlstate.js';

/** The LISTEN/NOTIFY channel that wakes readers of a schema (an identifier: at most 63 bytes). */
export function channelFor(schema: string): string {
  const channel = `beckett_${schema}`;
  return channel.length <= 63 ? channel : `beckett_${schemaTag(schema)}`;
}

const NOTIFY_SQL = `SELECT ${NO_FLUSH}, pg_notify($1, '')`;

/** Default shortest time between two wake-ups of one store. */
export const NOTIFY_WINDOW_MS = 3;

/**
 * Wake-up notifications, sent after commit and coalesced. A NOTIFY inside the writing transaction
 * takes a cluster-wide lock at commit and serialises every notifying commit; here writers only mark
 * "something was appended". The first append after a quiet spell is announced at once (low
 * latency); appends that follow within the window share one trailing NOTIFY at its end, so a busy
 * writer sends at most one per window instead of one per append, and the last append of a burst is
 * always announced. At most one NOTIFY is in flight.
 *
 * A wake-up rides on a write's own round trip when it can (WakeupCarrier claims it). One owed
 * while a write is in flight waits for that write to end; at its end, it is sent on its own (when
 * due, else at the end of its window) only if no write has started by the next event-loop turn (a
 * writer's next append starts in the microtasks after its last one resolves) and claimed it. Writes
 * that keep it waiting hold it back for one window at most after it came due. So beside a writer
 * that appends without pause no timer fires while an append is in flight and no NOTIFY goes out on
 * its own: each window's wake-up rides on the first append after it came due. (Sent on its own
 * beside the writer, it would leave that append nothing to carry, and the writer would pay a round
 * trip and a server transaction for one wake-up in every window, test/store/carriedWakeup.test.ts;
 * a timer firing mid-append costs the writer more than the carried NOTIFY.)
 */
export class Notifier implements CarriedWakeup {
  #inFlight = false;
  #pending = false;
  #closed = false;
  #lastSentAt = Number.NEGATIVE_INFINITY;
  /** Sends the pending wake-up: at the end of its window once no write is in flight, or at the
   *  latest one window after it came due. */
  #timer: NodeJS.Timeout | undefined;
  /** The next turn, when it looks whether a write has started to carry the pending wake-up. */
  #turn: NodeJS.Immediate | undefined;
  /** Writes in flight that may claim the wake-up (see writeStarted). */
  #writes = 0;
  readonly #pool: pg.Pool;
  readonly #channel: string;
  readonly #windowMs: number;
  readonly #statement: pg.QueryConfig;

  constructor(pool: pg.Pool, ctx: SqlContext, windowMs = NOTIFY_WINDOW_MS) {
    this.#pool = pool;
    this.#channel = channelFor(ctx.schema);
    this.#windowMs = windowMs;
    this.#statement = statement(ctx, 'notify', NOTIFY_SQL, [this.#channel]);
  }

  /**
   * Take the next wake-up into a write's own round trip (see WakeupCarrier): the NOTIFY statement
   * when one is due now (none in flight, the window since the last one has passed; a trailing one
   * still waiting is replaced, as the write commits after what it owed), else undefined.
   */
  claim(): pg.QueryConfig | undefined {
    if (this.#closed || this.#inFlight) return undefined;
    const now = performance.now();
    if (now < this.#lastSentAt + this.#windowMs) return undefined;
    this.#cancel();
    this.#pending = false;
    this.#lastSentAt = now;
    return this.#statement;
  }

  /** A wake-up taken by claim() and not sent (the write failed): owed again. */
  owe(): void {
    this.notify();
  }

  /** A write that may claim the wake-up is starting (WakeupCarrier). */
  writeStarted(): void {
    this.#writes++;
  }

  /** That write has ended: a wake-up still owed is sent, unless the next write claims it. */
  writeEnded(): void {
    this.#writes--;
    this.#schedule();
  }

  /** Note that messages were committed; a NOTIFY follows within the window. Never throws. */
  notify(): void {
    if (this.#closed) return;
    this.#pending = true;
    this.#schedule();
  }

  #schedule(): void {
    if (this.#inFlight || !this.#pending || this.#closed) return;
    // The latest it goes out, whatever the writes in flight do: one window after it came due.
    if (!this.#timer) {
      const now = performance.now();
      this.#arm(Math.max(this.#lastSentAt + this.#windowMs, now) + this.#windowMs - now);
    }
    // No write in flight: next turn, unless a write has started by then (it may claim it).
    if (this.#writes > 0 || this.#turn) return;
    this.#turn = setImmediate(() => {
      this.#turn = undefined;
      if (this.#inFlight || !this.#pending || this.#closed || this.#writes > 0) return;
      const wait = this.#lastSentAt + this.#windowMs - performance.now();
      if (wait > 0) this.#arm(wait);
      else void this.#send();
    });
    this.#turn.unref();
  }

  /** (Re)arm the timer that sends the pending wake-up in `ms`. */
  #arm(ms: number): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (this.#pending && !this.#inFlight && !this.#closed) void this.#send();
    }, ms);
    // A pending wake-up never keeps the process alive on its own.
    this.#timer.unref();
  }

  #cancel(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#turn) clearImmediate(this.#turn);
    this.#turn = undefined;
  }

  async #send(): Promise<void> {
    this.#cancel();
    this.#inFlight = true;
    this.#pending = false;
    this.#lastSentAt = performance.now();
    try {
      // Wake-ups are an optimisation (pollers are the backstop): a failed NOTIFY is not an error.
      // Its transaction commits without waiting for a WAL flush (a NOTIFY takes a transaction id,
      // so its commit would otherwise cost an fsync): the appends it announces are durable already.
      await this.#pool.query(this.#statement).catch(() => undefined);
    } finally {
      this.#inFlight = false;
      this.#schedule();
    }
  }

  /**
   * Send a pending wake-up now and wait for it and the NOTIFY in flight, if any: one asked for while
   * that one was in flight goes out when it returns, not at the end of its window.
   */
  async flush(): Promise<void> {
    for (;;) {
      while (this.#inFlight) await new Promise((r) => setTimeout(r, 1));
      if (!this.#pending || this.#closed) return;
      this.#cancel();
      await this.#send();
    }
  }

  /** Stop sending (the store flushes first, so no pending wake-up is dropped). */
  close(): void {
    this.#closed = true;
  }
}

/** A wake-up a write can take into its own round trip (Notifier, and the queues' notifier). */
export interface CarriedWakeup {
  /** The NOTIFY statement when a wake-up is due now (taken: the write sends it), else undefined. */
  claim(): pg.QueryConfig | undefined;
  /** The write that took the wake-up failed before sending it: it is owed again. */
  owe(): void;
  /** A write that may claim the wake-up starts (optional: a wake-up may wait for its end). */
  writeStarted?(): void;
  /** That write has ended. */
  writeEnded?(): void;
}

/**
 * A write on the store's pool that carries its own wake-up when one is due: the write's statement
 * runs as BEGIN, the statement, COMMIT, then the NOTIFY in a transaction of its own (no WAL flush,
 * see NOTIFY_SQL), all in one round trip. Readers are woken as the append resolves, not one round
 * trip after it, and the NOTIFY never holds the cluster's notify lock across the write's commit (a
 * NOTIFY inside the writing transaction would serialise every notifying commit with its flush).
 * When no wake-up is due (one was sent within the window), the statement runs as a plain query and
 * the store announces the write after commit as before. Used for one append: `carried` tells the
 * store whether the append's wake-up went out with it.
 */
export class WakeupCarrier {
  carried = false;

  constructor(
    readonly pool: pg.Pool,
    readonly wakeup: CarriedWakeup,
  ) {}

  /** Stands in for the pool where the store's append code takes a Queryable. */
  get db(): Queryable {
    return this as unknown as Queryable;
  }

  async query<R extends pg.QueryResultRow>(
    textOrConfig: string | pg.QueryConfig,
    values?: unknown[],
  ): Promise<{ rows: R[]; rowCount: number }> {
    const config: pg.QueryConfig =
      typeof textOrConfig === 'string' ? { text: textOrConfig, ...(values ? { values } : {}) } : textOrConfig;
    return this.queryAll<R>([config]);
  }

  /**
   * `statements` in one round trip and one transaction (the wake-up after it when one is due): the
   * last statement's rows. The statements before it set up its transaction (planSettings.ts).
   */
  queryAll<R extends pg.QueryResultRow>(
    statements: pg.QueryConfig[],
  ): Promise<{ rows: R[]; rowCount: number }> {
    return this.#write(
      statements,
      () => queryAllOnPool<R>(this.pool, statements),
      ({ rows, fields }) => rowsOf<R>(rows, fields),
    );
  }

  /**
   * One statement as runFirstValue (pipeline.ts) runs it, the wake-up after it when one is due: the
   * first column of its first row as text, undefined when it returns no row.
   */
  firstValue(statement: pg.QueryConfig): Promise<string | null | undefined> {
    return this.#write(
      [statement],
      () => runFirstValue(this.pool, statement as PipelinedStatement),
      ({ rows }) => rows[0]?.[0],
    );
  }

  /** The write: `alone` when no wake-up is due, else `statements` carrying it, read by `fromCarried`. */
  async #write<T>(
    statements: pg.QueryConfig[],
    alone: () => Promise<T>,
    fromCarried: (last: { rows: (string | null)[][]; fields: PipelinedField[] }) => T,
  ): Promise<T> {
    this.wakeup.writeStarted?.();
    try {
      const notify = this.carried ? undefined : this.wakeup.claim();
      if (!notify) return await alone();
      return fromCarried(await this.#carry(statements, notify));
    } finally {
      this.wakeup.writeEnded?.();
    }
  }

  /** `statements` as BEGIN, them, COMMIT, then the claimed wake-up `notify`: the last one's text rows. */
  #carry(
    statements: pg.QueryConfig[],
    notify: pg.QueryConfig,
  ): Promise<{ rows: (string | null)[][]; fields: PipelinedField[] }> {
    const last = statements.length;
    // The wake-up's statement is named exactly when the store's context allows prepared statements
    // (statement() in queryable.ts): BEGIN and COMMIT follow it.
    const { begin, commit } = transactionStatements(notify.name !== undefined);
    return withClient(this.pool, async (client) => {
      try {
        // Only the write's columns are wanted: the rest go without a Describe.
        const { results, fields } = await runPipelinedWithFields(
          client,
          [begin, ...statements, commit, notify] as PipelinedStatement[],
          (i) => i === last,
        );
        this.carried = true;
        return { rows: results[last]!, fields: fields[last]! };
      } catch (err) {
        // Owed again: what the wake-up was taken for may not be announced otherwise.
        this.wakeup.owe();
        // The write committed and only the NOTIFY after it failed (its queue full): the write stands.
        const done = pipelinedPartial(err);
        if (done && done.completed >= last + 2)
          return { rows: done.results[last]!, fields: done.fields[last]! };
        // A failed statement leaves the transaction open (aborted): end it before the client goes
        // back (withClient releases a client whose connection broke as broken).
        if (!isConnectionError(err)) await client.query('ROLLBACK').catch(() => undefined);
        throw err;
      }
    });
  }
}

/**
 * `statements` on a client of `pool`, in one round trip and one implicit transaction: the last
 * statement's rows (one statement: a plain pool.query).
 */
export async function queryAllOnPool<R extends pg.QueryResultRow>(
  pool: pg.Pool,
  statements: pg.QueryConfig[],
): Promise<{ rows: R[]; rowCount: number }> {
  if (statements.length === 1) {
    const r = await pool.query<R>(statements[0]!);
    return { rows: r.rows, rowCount: r.rowCount ?? 0 };
  }
  const rows = await runPipelined<R>(pool, statements as PipelinedStatement[]);
  return { rows, rowCount: rows.length };
}

function rowsOf<R>(rows: (string | null)[][], fields: PipelinedField[]): { rows: R[]; rowCount: number } {
  const parsed = rowObjects<R>(rows, fields);
  return { rows: parsed, rowCount: parsed.length };
}
