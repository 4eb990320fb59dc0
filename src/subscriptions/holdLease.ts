import { performance } from 'node:perf_hooks';
import type pg from 'pg';
import type { SqlContext } from '../db/queryable.js';
import { BeckettError } from '../errors.js';
import { type ClaimedCheckpoint, extendLease } from './claimCheckpoint.js';

/** The reason a handler's signal aborts when its checkpoint's lease is gone. */
export class LeaseLostError extends BeckettError {
  constructor(claim: ClaimedCheckpoint, how: 'taken' | 'expired') {
    super(
      'LEASE_LOST',
      how === 'taken'
        ? `The lease on ${claim.subscription} ${claim.stream} was taken over by another consumer.`
        : `The lease on ${claim.subscription} ${claim.stream} expired before it could be renewed.`,
      {
        hint: 'A handler blocked the event loop, or the database was away, for longer than the lease: keep handlers asynchronous and shorter than --lease-ms.',
      },
    );
  }
}

/**
 * A claimed checkpoint's lease as its holder sees it. The server sets `leased_until = now() +
 * leaseMs` when it runs the claim (or an extension), which is after the holder sent it, so
 * `sent + leaseMs` on the holder's monotonic clock is a deadline the server's lease cannot end
 * before. Past it another consumer may hold the stream, whatever the holder's event loop or the
 * network did meanwhile: `expired()` reads the clock itself (a timer cannot fire while a handler
 * blocks the loop), so a holder checks it before every message. An extension that fails with an
 * error proves nothing and leaves the deadline where it was; one that matches no row means the
 * lease was taken over. Writes stay conditional on the lease id in any case.
 */
export class HeldLease {
  readonly #controller = new AbortController();
  #deadline: number;
  #taken = false;
  #deadlineTimer: NodeJS.Timeout | undefined;
  readonly #extender: NodeJS.Timeout;

  constructor(
    private readonly pool: pg.Pool,
    private readonly ctx: SqlContext,
    private readonly claim: ClaimedCheckpoint,
    private readonly leaseMs: number,
  ) {
    this.#deadline = claim.leaseDeadline;
    this.#armDeadline();
    this.#extender = setInterval(() => this.#extend(), Math.max(50, Math.floor(leaseMs / 3)));
  }

  /** Aborted (with a LeaseLostError) once the lease is taken over or its deadline has passed. */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** True once the lease is known to be taken over by another consumer (a write would match nothing). */
  get taken(): boolean {
    return this.#taken;
  }

  /** True once the lease was taken over or its local deadline has passed: handle no further message. */
  expired(): boolean {
    if (!this.#controller.signal.aborted && performance.now() >= this.#deadline) this.#lose('expired');
    return this.#controller.signal.aborted;
  }

  /** Stop extending (the holder wrote its last word, or gives the stream up). */
  stop(): void {
    clearInterval(this.#extender);
    clearTimeout(this.#deadlineTimer);
  }

  #extend(): void {
    if (this.expired()) return;
    const sent = performance.now();
    extendLease(this.pool, this.ctx, this.claim, this.leaseMs).then(
      (ours) => {
        if (!ours) {
          this.#taken = true;
          this.#lose('taken');
        } else if (!this.#controller.signal.aborted) {
          this.#deadline = Math.max(this.#deadline, sent + this.leaseMs);
          this.#armDeadline();
        }
      },
      // Unknown outcome (the server is away): the deadline stands, and passes if nothing confirms.
      () => undefined,
    );
  }

  #armDeadline(): void {
    clearTimeout(this.#deadlineTimer);
    this.#deadlineTimer = setTimeout(() => this.expired(), Math.max(0, this.#deadline - performance.now()));
  }

  #lose(how: 'taken' | 'expired'): void {
    if (this.#controller.signal.aborted) return;
    this.stop();
    this.#controller.abort(new LeaseLostError(this.claim, how));
  }
}
