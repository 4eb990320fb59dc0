/** A clock tests move by hand: scheduled messages and retries come due when it passes their time. */
export interface TestClock {
  now(): Date;
  /** Move forward by `ms` (>= 0). */
  advance(ms: number): void;
  /** Jump to a time (never backwards). */
  set(at: Date): void;
}

/** A controllable clock starting at `start` (default 2025-01-01T00:00:00Z, so tests are repeatable). */
export function createTestClock(start: Date = new Date('2025-01-01T00:00:00Z')): TestClock {
  let t = start.getTime();
  return {
    now: () => new Date(t),
    advance(ms) {
      if (!Number.isFinite(ms) || ms < 0)
        throw new RangeError(`advance() takes milliseconds >= 0, got ${ms}.`);
      t += ms;
    },
    set(at) {
      if (at.getTime() < t) throw new RangeError(`The test clock cannot go back to ${at.toISOString()}.`);
      t = at.getTime();
    },
  };
}
