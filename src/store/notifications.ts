import type pg from 'pg';
import { type SqlContext, schemaTag, statement } from '../db/queryable.js';

/** The LISTEN/NOTIFY channel that wakes readers of a schema (an identifier: at most 63 bytes). */
export function channelFor(schema: string): string {
  const channel = `beckett_${schema}`;
  return channel.length <= 63 ? channel : `beckett_${schemaTag(schema)}`;
}

const NOTIFY_SQL = `SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, '')`;

/** Default shortest time between two wake-ups of one store. */
export const NOTIFY_WINDOW_MS = 3;

/**
 * Wake-up notifications, sent after commit and coalesced. A NOTIFY inside the writing transaction
 * takes a cluster-wide lock at commit and serialises every notifying commit; here writers only mark
 * "something was appended". The first append after a quiet spell is announced at once (low
 * latency); appends that follow within the window share one trailing NOTIFY at its end, so a busy
 * writer sends at most one per window instead of one per append, and the last append of a burst is
 * always announced. At most one NOTIFY is in flight.
 */
export class Notifier {
  #inFlight = false;
  #pending = false;
  #closed = false;
  #lastSentAt = Number.NEGATIVE_INFINITY;
  #timer: NodeJS.Timeout | undefined;
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

  /** Note that messages were committed; a NOTIFY follows within the window. Never throws. */
  notify(): void {
    if (this.#closed) return;
    this.#pending = true;
    this.#schedule();
  }

  #schedule(): void {
    if (this.#inFlight || this.#timer || !this.#pending || this.#closed) return;
    const wait = this.#lastSentAt + this.#windowMs - performance.now();
    if (wait <= 0) {
      void this.#send();
      return;
    }
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#schedule();
    }, wait);
    // A pending wake-up never keeps the process alive on its own.
    this.#timer.unref();
  }

  async #send(): Promise<void> {
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

  /** Send a pending wake-up now and wait for the NOTIFY in flight, if any. */
  async flush(): Promise<void> {
    if (this.#timer) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
      if (this.#pending && !this.#closed && !this.#inFlight) void this.#send();
    }
    while (this.#inFlight) await new Promise((r) => setTimeout(r, 1));
  }

  /** Stop sending (the store flushes first, so no pending wake-up is dropped). */
  close(): void {
    this.#closed = true;
  }
}
