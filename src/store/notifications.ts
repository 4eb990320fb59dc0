import type pg from 'pg';
import type { SqlContext } from '../db/queryable.js';

/** The LISTEN/NOTIFY channel that wakes readers of a schema. */
export function channelFor(schema: string): string {
  return `beckett_${schema}`;
}

/**
 * Wake-up notifications, sent after commit and coalesced. A NOTIFY inside the writing transaction
 * takes a cluster-wide lock at commit and serialises every notifying commit; here writers only mark
 * "something was appended" and at most one NOTIFY is in flight, with at most one more queued behind
 * it, however many appends commit meanwhile.
 */
export class Notifier {
  #inFlight = false;
  #pending = false;
  #closed = false;
  readonly #pool: pg.Pool;
  readonly #channel: string;

  constructor(pool: pg.Pool, ctx: SqlContext) {
    this.#pool = pool;
    this.#channel = channelFor(ctx.schema);
  }

  /** Note that messages were committed; a NOTIFY follows soon. Never throws. */
  notify(): void {
    if (this.#closed) return;
    if (this.#inFlight) {
      this.#pending = true;
      return;
    }
    this.#inFlight = true;
    void this.#send();
  }

  async #send(): Promise<void> {
    try {
      do {
        this.#pending = false;
        // Wake-ups are an optimisation (pollers are the backstop): a failed NOTIFY is not an error.
        await this.#pool.query('SELECT pg_notify($1, $2)', [this.#channel, '']).catch(() => undefined);
      } while (this.#pending && !this.#closed);
    } finally {
      this.#inFlight = false;
    }
  }

  /** Wait for the NOTIFY in flight, if any. */
  async flush(): Promise<void> {
    while (this.#inFlight) await new Promise((r) => setTimeout(r, 1));
  }

  close(): void {
    this.#closed = true;
  }
}
