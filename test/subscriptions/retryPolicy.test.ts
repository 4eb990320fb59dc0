import { describe, expect, it } from 'vitest';
import { describeError, retriesExhausted, retryDelayMs } from '../../src/subscriptions/retryPolicy.js';
import { Wakeup } from '../../src/subscriptions/wakeup.js';

describe('retry policy', () => {
  const backoff = { initialMs: 100, maxMs: 1000 };
  it('doubles from initialMs up to maxMs, jittered within the upper half', () => {
    const nominal = [100, 200, 400, 800, 1000, 1000];
    nominal.forEach((n, i) => {
      expect(retryDelayMs(i + 1, backoff, () => 0)).toBe(n / 2);
      expect(retryDelayMs(i + 1, backoff, () => 0.999999)).toBe(n);
    });
    const samples = Array.from({ length: 200 }, () => retryDelayMs(3, backoff));
    expect(Math.min(...samples)).toBeGreaterThanOrEqual(200);
    expect(Math.max(...samples)).toBeLessThanOrEqual(400);
    expect(new Set(samples).size).toBeGreaterThan(10);
    expect(retryDelayMs(10_000, backoff, () => 1)).toBe(1000);
  });

  it('is exhausted after maxRetries retries (maxRetries + 1 failed attempts)', () => {
    expect(retriesExhausted(3, 3)).toBe(false);
    expect(retriesExhausted(4, 3)).toBe(true);
    expect(retriesExhausted(1, 0)).toBe(true);
  });

  it('stores the error type, message, stack and attempt', () => {
    const e = describeError(new RangeError('too far'), 2);
    expect(e).toMatchObject({ type: 'RangeError', message: 'too far', attempt: 2 });
    expect(e.stack).toContain('too far');
  });
});

describe('wake-ups', () => {
  it('remembers a wake-up sent while nobody waited, and ends waits on abort', async () => {
    const w = new Wakeup();
    const ac = new AbortController();
    w.wake();
    expect(await w.wait(10_000, ac.signal)).toBe(true);
    const pending = w.wait(10_000, ac.signal);
    ac.abort();
    expect(await pending).toBe(false);
    expect(await w.wait(5, new AbortController().signal)).toBe(false);
  });
});
