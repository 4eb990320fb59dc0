/**
 * Exponential backoff with "full jitter" on the upper half: the delay for attempt n lies between
 * half and all of min(maxMs, initialMs * 2^(n-1)). Jitter spreads retries of many streams that
 * failed together (a dependency went down) instead of retrying them in lockstep; keeping the lower
 * half makes the growth still visible to an operator reading next_attempt_at.
 */
export function retryDelayMs(
  attempt: number,
  backoff: { initialMs: number; maxMs: number },
  random: () => number = Math.random,
): number {
  const exp = Math.min(backoff.maxMs, backoff.initialMs * 2 ** Math.max(0, Math.min(attempt - 1, 40)));
  return Math.round(exp / 2 + random() * (exp / 2));
}

/** True when a checkpoint that failed `attempts` times in a row has no retry left. */
export function retriesExhausted(attempts: number, maxRetries: number): boolean {
  return attempts > maxRetries;
}

/** The error as stored in checkpoints.last_error. */
export interface StoredError {
  type: string;
  message: string;
  stack: string | undefined;
  attempt: number;
  at: string;
}

export function describeError(err: Error, attempt: number): StoredError {
  return {
    type: err.name || err.constructor?.name || 'Error',
    message: err.message,
    stack: err.stack,
    attempt,
    at: new Date().toISOString(),
  };
}
