/**
 * A wake-up signal for polling loops: wait() resolves on wake(), on timeout or on abort. A wake()
 * with nobody waiting is remembered, so a notification that arrives while the loop is busy is not
 * lost (the loop goes round once more instead of sleeping a full poll interval).
 */
export class Wakeup {
  #waiters: (() => void)[] = [];
  #pending = false;

  wake(): void {
    const waiters = this.#waiters;
    if (waiters.length === 0) {
      this.#pending = true;
      return;
    }
    this.#waiters = [];
    for (const w of waiters) w();
  }

  /** Resolves true when woken, false on timeout or abort. */
  wait(ms: number, signal: AbortSignal): Promise<boolean> {
    if (this.#pending) {
      this.#pending = false;
      return Promise.resolve(true);
    }
    if (signal.aborted) return Promise.resolve(false);
    return new Promise((resolve) => {
      let done = false;
      const finish = (woken: boolean) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        this.#waiters = this.#waiters.filter((w) => w !== onWake);
        resolve(woken);
      };
      const onWake = () => finish(true);
      const onAbort = () => finish(false);
      const timer = setTimeout(() => finish(false), ms);
      signal.addEventListener('abort', onAbort, { once: true });
      this.#waiters.push(onWake);
    });
  }
}

/** Sleep that ends early when the signal aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

/**
 * Poll interval that backs off while idle: fast after work was found (more may follow), doubling
 * up to the maximum while there is none. Notifications cut any wait short.
 */
export class AdaptiveInterval {
  #current: number;
  constructor(
    readonly minMs: number,
    readonly maxMs: number,
  ) {
    this.#current = minMs;
  }
  /** The wait after an idle round (then grows). */
  idle(): number {
    const v = this.#current;
    this.#current = Math.min(this.maxMs, this.#current * 2);
    return v;
  }
  busy(): void {
    this.#current = this.minMs;
  }
}
