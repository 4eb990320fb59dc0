import type { Claim } from './claimCheckpoint.js';

/**
 * Where the consumers of one process wait for work. A waiting consumer is either woken (it then
 * claims for itself) or handed a claim that the process's global reader made for it in the round
 * that dispatched the work: no claim round trip, no second transaction between a commit and its
 * handler. A wake with nobody waiting is remembered, so a notification that arrives while every
 * consumer is busy is not lost; a claim with nobody waiting is kept for the next consumer to look,
 * for a moment: one still untaken after `staleMs` goes back (onStale).
 */
export class ClaimHandoff {
  #waiters: ((claim: Claim | undefined) => void)[] = [];
  #ready: { claim: Claim; at: number }[] = [];
  #pending = false;
  #staleTimer: NodeJS.Timeout | undefined;

  /**
   * `onStale` gets the claims handed over that no consumer took within `staleMs` (every consumer of
   * the process is busy): their leases must go back at once, or their streams would wait for a
   * busy consumer while another consumer or process could run them.
   */
  constructor(
    private readonly staleMs = Number.POSITIVE_INFINITY,
    private readonly onStale: (claims: Claim[]) => void = () => undefined,
  ) {}

  /** Consumers waiting now: the claims a reader round may make for this process. */
  get idle(): number {
    return this.#waiters.length;
  }

  /** Wake every waiting consumer (or the next one to wait): there may be work to claim. */
  wake(): void {
    const waiters = this.#waiters;
    if (waiters.length === 0) {
      this.#pending = true;
      return;
    }
    this.#waiters = [];
    for (const w of waiters) w(undefined);
  }

  /**
   * Hand claims to waiting consumers, one each; the rest go to the next consumers that look. The
   * consumer that began waiting last goes first: the one that just worked takes the next claim, and
   * the others' idle polls stretch out instead of every consumer polling as if it had just worked.
   */
  offer(claims: Claim[]): void {
    for (const claim of claims) {
      const waiter = this.#waiters.pop();
      if (waiter) waiter(claim);
      else this.#ready.push({ claim, at: performance.now() });
    }
    this.#armStale();
  }

  /** A claim handed over that no consumer has taken yet. */
  take(): Claim | undefined {
    return this.#ready.shift()?.claim;
  }

  /** Offer no claim any more (the worker stops and hands every lease of its own back). */
  clear(): void {
    clearTimeout(this.#staleTimer);
    this.#staleTimer = undefined;
    this.#ready = [];
  }

  #armStale(): void {
    if (this.#staleTimer || this.#ready.length === 0 || !Number.isFinite(this.staleMs)) return;
    const wait = Math.max(0, this.#ready[0]!.at + this.staleMs - performance.now());
    this.#staleTimer = setTimeout(() => {
      this.#staleTimer = undefined;
      const now = performance.now();
      let n = 0;
      while (n < this.#ready.length && this.#ready[n]!.at + this.staleMs <= now) n++;
      const stale = this.#ready.splice(0, n).map((r) => r.claim);
      if (stale.length > 0) this.onStale(stale);
      this.#armStale();
    }, wait);
    this.#staleTimer.unref();
  }

  /** Resolves with a claim handed over, or undefined when woken, on timeout or on abort. */
  wait(ms: number, signal: AbortSignal): Promise<Claim | undefined> {
    const ready = this.#ready.shift();
    if (ready) return Promise.resolve(ready.claim);
    if (this.#pending) {
      this.#pending = false;
      return Promise.resolve(undefined);
    }
    if (signal.aborted) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      let done = false;
      const finish = (claim: Claim | undefined) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        this.#waiters = this.#waiters.filter((w) => w !== finish);
        resolve(claim);
      };
      const onAbort = () => finish(undefined);
      const timer = setTimeout(() => finish(undefined), ms);
      signal.addEventListener('abort', onAbort, { once: true });
      this.#waiters.push(finish);
    });
  }
}
