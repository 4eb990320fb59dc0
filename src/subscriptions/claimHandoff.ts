import type { Claim } from './claimCheckpoint.js';

/**
 * Where the consumers of one process wait for work. A waiting consumer is either woken (it then
 * claims for itself) or handed a claim that the process's global reader made for it in the round
 * that dispatched the work: no claim round trip, no second transaction between a commit and its
 * handler. A wake with nobody waiting is remembered, so a notification that arrives while every
 * consumer is busy is not lost; a claim with nobody waiting is kept for the next consumer to look.
 */
export class ClaimHandoff {
  #waiters: ((claim: Claim | undefined) => void)[] = [];
  #ready: Claim[] = [];
  #pending = false;

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

  /** Hand claims to waiting consumers, one each; the rest go to the next consumers that look. */
  offer(claims: Claim[]): void {
    for (const claim of claims) {
      const waiter = this.#waiters.shift();
      if (waiter) waiter(claim);
      else this.#ready.push(claim);
    }
  }

  /** A claim handed over that no consumer has taken yet. */
  take(): Claim | undefined {
    return this.#ready.shift();
  }

  /** Resolves with a claim handed over, or undefined when woken, on timeout or on abort. */
  wait(ms: number, signal: AbortSignal): Promise<Claim | undefined> {
    const ready = this.#ready.shift();
    if (ready) return Promise.resolve(ready);
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
